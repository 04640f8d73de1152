"""The spoken CAPTCHA: every character in a voice made up for this request, in babble and noise.

The clips in assets/voices/ ship with the project, so an attacker has them too: the first
generator (captcha.audio: clips sped up 0.9–1.2×, scaled, over quieter reversed clips) was read
back by correlating the audio with every clip at a grid of speeds. Here no character is
ever played as shipped (docs/CAPTCHA.md):

- a voice of its own: pitch and vocal-tract length moved together by resampling, formants moved
  again on their own (the spectral envelope warped, the harmonics kept), a random equaliser;
- a non-linear time warp: the playback rate wanders smoothly within the character, so no
  stretch of a template lines up for more than a few tens of milliseconds;
- over a continuous bed of babble (other clips, forward, in other made-up voices) and coloured
  noise (pink to brown), with characters fading in and out of it, never cut on silence.

A person still hears four characters, clearly louder than the babble, in order, about one a
second. Blocking CPU work (a few tens of ms): call it in the render executor.
"""

from __future__ import annotations

import functools
import io
import wave
from pathlib import Path

import numpy as np
import numpy.typing as npt

from services.config import VOICES_DIR

Samples = npt.NDArray[np.float64]  # a mono signal (or a frame of one), float samples
Voices = dict[str, list[Samples]]  # each character's spoken clips

RATE = 8000  # Hz, the clips' rate (telephone band is enough for spoken letters)
FRAME = 256  # STFT frame for the spectral changes (32 ms)
OVERLAP = 4
HOP = FRAME // OVERLAP
WINDOW_GAIN = float(np.sum(np.hanning(FRAME) ** 2) / HOP)  # Hann² summed at this hop: constant
# Ranges of the made-up voices: resampling moves pitch, formants and tempo together; the
# envelope warp moves the formants again (alone). Kept where letters stay recognisable.
RESAMPLE_RATE = (0.85, 1.2)
FORMANT_SHIFT = (0.86, 1.16)
LIFTER = 22  # cepstral coefficients kept as the envelope (formants), below any voice's pitch
BABBLE_STREAMS = 3


@functools.cache
def load_voices(voices_dir: Path = VOICES_DIR) -> Voices:
    """Every character's clips as float samples, trimmed, at equal loudness (read once per
    process: render processes load them on first use)."""
    voices: Voices = {}
    for folder in sorted(p for p in voices_dir.iterdir() if p.is_dir()):
        clips = []
        for path in sorted(folder.glob("*.wav")):
            with wave.open(str(path)) as wav:
                raw = np.frombuffer(wav.readframes(-1), np.uint8)
            samples = (raw.astype(np.float64) - 128) / 128
            loud = np.flatnonzero(np.abs(samples) > 0.03)
            samples = samples[loud[0] : loud[-1] + 1]
            clips.append(samples / rms(samples))
        voices[folder.name] = clips
    return voices


def rms(samples: Samples) -> float:
    return float(np.sqrt(np.mean(samples**2)) + 1e-12)


def render_wav(text: str, seed: int | None = None) -> bytes:
    """The text spoken as an 8 kHz 16-bit mono WAV. `seed` only for tests: by default every
    call draws fresh randomness from the OS."""
    rng = np.random.default_rng(seed)
    voices = load_voices()
    spoken = [disguise(_choice(rng, voices[char]), rng) for char in text]

    # Timeline: two beeps, a pause, then each character with a gap of babble after it.
    lead = int(RATE * rng.uniform(0.45, 0.7))
    intro = beeps(rng)
    onsets, position = [], len(intro) + lead
    for clip in spoken:
        onsets.append(position)
        position += len(clip) + int(RATE * rng.uniform(0.3, 0.6))
    total = position + int(RATE * rng.uniform(0.2, 0.4))

    mix = np.zeros(total)
    for onset, clip in zip(onsets, spoken, strict=True):
        mix[onset : onset + len(clip)] += clip * 10 ** (rng.uniform(-2.5, 2.5) / 20)
    mix += babble(total, rng, voices) * 10 ** (rng.uniform(-12, -9) / 20)
    mix += coloured_noise(total, rng) * 10 ** (rng.uniform(-19, -15) / 20)
    mix[: len(intro)] += intro
    return to_wav(mix)


def _choice(rng: np.random.Generator, clips: list[Samples]) -> Samples:
    return clips[int(rng.integers(len(clips)))]


def disguise(clip: Samples, rng: np.random.Generator) -> Samples:
    """One clip in a new voice, warped in time, at unit loudness, with soft edges."""
    warped = wander(clip, rng, base=np.exp(rng.uniform(*np.log(RESAMPLE_RATE))))
    voiced = reshape_spectrum(warped, rng)
    voiced /= rms(voiced)
    fade = min(len(voiced) // 4, int(0.02 * RATE))
    ramp = np.linspace(0, 1, fade)
    voiced[:fade] *= ramp
    voiced[len(voiced) - fade :] *= ramp[::-1]
    return voiced


def wander(samples: Samples, rng: np.random.Generator, base: float) -> Samples:
    """Resample at a rate that drifts smoothly around `base` (pitch, formants and tempo ×rate):
    a non-linear time warp, different every 50–110 ms."""
    knots = max(2, int(len(samples) / (RATE * rng.uniform(0.05, 0.11))) + 2)
    depth = rng.uniform(0.05, 0.12)
    rates = base * (1 + depth * rng.uniform(-1, 1, knots))
    steps = np.interp(np.linspace(0, knots - 1, int(len(samples) / base)), np.arange(knots), rates)
    positions = np.cumsum(steps)
    positions = positions[positions < len(samples) - 1]
    return np.interp(positions, np.arange(len(samples)), samples)


def reshape_spectrum(samples: Samples, rng: np.random.Generator) -> Samples:
    """Move the formants (not the pitch) by a factor that drifts over the clip, and apply a
    random equaliser: the spectral envelope of each frame is replaced by a warped, tilted and
    bumped copy of itself, the fine structure (harmonics) and phases are kept."""
    padded = np.pad(samples, (FRAME, FRAME))
    count = 1 + (len(padded) - FRAME) // HOP
    window = np.hanning(FRAME)
    index = np.arange(FRAME)[None, :] + HOP * np.arange(count)[:, None]
    spectrum = np.fft.rfft(padded[index] * window, axis=1)
    log_magnitude = np.log(np.abs(spectrum) + 1e-9)

    cepstrum = np.fft.irfft(log_magnitude, axis=1)
    cepstrum[:, LIFTER : FRAME - LIFTER + 1] = 0
    envelope = np.fft.rfft(cepstrum, axis=1).real

    bins = np.arange(spectrum.shape[1], dtype=np.float64)
    # The formant shift wanders too, through a new value every 60–120 ms (frames are 8 ms apart).
    knots = max(2, int(count * HOP / (RATE * rng.uniform(0.06, 0.12))) + 2)
    low_shift, high_shift = (float(v) for v in np.log(FORMANT_SHIFT))
    shifts = np.exp(rng.uniform(low_shift, high_shift, knots))
    warps = np.interp(np.linspace(0, knots - 1, count), np.arange(knots), shifts)
    # Envelope value at bin/warp for every frame (linear interpolation, vectorised).
    source = np.clip(bins[None, :] / warps[:, None], 0, bins[-1])
    low = np.minimum(source.astype(np.int64), len(bins) - 2)
    fraction = source - low
    moved = (1 - fraction) * np.take_along_axis(envelope, low, axis=1)
    moved += fraction * np.take_along_axis(envelope, low + 1, axis=1)
    gain = equaliser(bins * RATE / FRAME, rng) / 20 * np.log(10)
    magnitude = np.exp(log_magnitude - envelope + moved + gain)
    phase = np.angle(spectrum) + dispersion(len(bins), count, rng)
    frames = np.fft.irfft(magnitude * np.exp(1j * phase), n=FRAME, axis=1)
    return overlap_add(frames * window, len(padded))[FRAME : FRAME + len(samples)] / WINDOW_GAIN


def dispersion(bins: int, count: int, rng: np.random.Generator) -> Samples:
    """Phase added per frame and bin: a random all-pass filter that changes slowly from the
    first frame to the last. The ear hardly hears phase (a few ms of group delay, smooth over
    frequency); a waveform template no longer lines up with the result."""
    knots = np.linspace(0, bins - 1, 17)
    first, last = (
        np.interp(np.arange(bins), knots, rng.uniform(-2 * np.pi, 2 * np.pi, len(knots)))
        for _ in range(2)
    )
    blend = np.linspace(0, 1, count)[:, None]
    return (1 - blend) * first + blend * last


def overlap_add(frames: Samples, length: int) -> Samples:
    """Sum frames placed HOP apart. Every OVERLAP-th frame tiles without overlap, so each of
    the OVERLAP phases is one contiguous add."""
    out = np.zeros(length + FRAME)
    for phase in range(OVERLAP):
        tiles = frames[phase::OVERLAP].reshape(-1)
        out[phase * HOP : phase * HOP + len(tiles)] += tiles
    return out[:length]


def equaliser(hz: Samples, rng: np.random.Generator) -> Samples:
    """Gain in dB per frequency: a tilt of ±4 dB per octave around 1 kHz and two bumps or dips
    of up to ±9 dB, each about half an octave wide."""
    octaves = np.log2(np.maximum(hz, 50) / 1000)
    gain = rng.uniform(-4, 4) * octaves
    for _ in range(2):
        centre = np.log2(rng.uniform(300, 3300) / 1000)
        gain += rng.uniform(-9, 9) * np.exp(-(((octaves - centre) / 0.35) ** 2))
    return gain


def babble(length: int, rng: np.random.Generator, voices: Voices) -> Samples:
    """Several streams of other clips, each in its own made-up voice, overlapping: speech a
    template matches as well as the characters, but that a listener hears as a crowd behind."""
    everything = [clip for clips in voices.values() for clip in clips]
    bed = np.zeros(length)
    for _ in range(BABBLE_STREAMS):
        # One talker per stream: each clip with its own pitch and time warp, then the whole
        # stream through one spectral reshaping (cheaper than one per clip; its formant shift
        # still drifts along the stream).
        stream = np.zeros(length + RATE)
        position = -int(rng.integers(RATE // 2))
        while position < length:
            clip = _choice(rng, everything)
            clip = wander(clip, rng, base=np.exp(rng.uniform(*np.log(RESAMPLE_RATE))))
            start = max(position, 0)
            piece = clip[start - position :]
            stream[start : start + len(piece)] += piece * 10 ** (rng.uniform(-4, 0) / 20)
            position += len(clip) - int(RATE * rng.uniform(0.0, 0.12))
        talker = reshape_spectrum(stream[:length], rng)
        bed += talker / rms(talker)
    return bed / rms(bed)


def coloured_noise(length: int, rng: np.random.Generator) -> Samples:
    """Noise between pink (1/f) and brown (1/f²), its level drifting slowly, at unit loudness."""
    spectrum = np.fft.rfft(rng.standard_normal(length))
    hz = np.fft.rfftfreq(length, 1 / RATE)
    spectrum *= np.maximum(hz, 20) ** (-rng.uniform(0.5, 1.0))
    noise = np.fft.irfft(spectrum, n=length)
    swell = np.interp(np.arange(length), [0, length - 1], rng.uniform(0.6, 1.4, 2))
    noise *= swell
    return noise / rms(noise)


def beeps(rng: np.random.Generator) -> Samples:
    """Two short beeps: the CAPTCHA starts now."""
    tone_length, gap = int(0.12 * RATE), int(0.1 * RATE)
    t = np.arange(tone_length) / RATE
    envelope = np.minimum(1, np.minimum(t, t[::-1]) / 0.01)
    tone = 0.5 * np.sin(2 * np.pi * rng.uniform(800, 1000) * t) * envelope
    return np.concatenate([tone, np.zeros(gap), tone, np.zeros(gap)])


def to_wav(mix: Samples) -> bytes:
    pcm = (mix / (np.max(np.abs(mix)) + 1e-9) * 0.89 * 32767).astype("<i2")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(RATE)
        wav.writeframes(pcm.tobytes())
    return buffer.getvalue()
