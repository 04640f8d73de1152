#!/usr/bin/env bash
# Regenerate assets/voices/: one folder per CAPTCHA character with spoken samples for the
# audio CAPTCHA (the captcha package ships digits only). Needs Debian's espeak-ng and sox.
# Output format is what services/captcha/audio.py reads: 8 kHz, 8-bit unsigned, mono WAV.
# These clips ship, so an attacker has them too: the generator never plays them as they are
# (new voice, time warp, babble and noise per request; docs/CAPTCHA.md).
set -euo pipefail
cd "$(dirname "$0")/.."
chars="${1:-ACEFHJKMNPRTUVWXY34679}"
out=assets/voices
rm -rf "$out"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for ((i = 0; i < ${#chars}; i++)); do
  c=${chars:i:1}
  mkdir -p "$out/$c"
  n=0
  for voice in en+m3 en+f3; do
    for speed in 120 150; do
      espeak-ng -v "$voice" -s "$speed" -w "$tmp/raw.wav" "$c"
      sox "$tmp/raw.wav" -r 8000 -b 8 -c 1 -e unsigned-integer "$out/$c/$n.wav" norm -1
      n=$((n + 1))
    done
  done
done
du -sh "$out"
