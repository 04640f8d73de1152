"""A template-matching attack on the audio CAPTCHA, built only from what the project ships.

An attacker has assets/voices/ (every clip the generator speaks from). Two solvers:

- `NccSolver`: normalised cross-correlation of the waveform against every clip resampled to a
  grid of speeds (the attack that solved 6 of 6 CAPTCHAs of the first generator);
- `DtwSolver`: log-mel cepstra (MFCC, mean-normalised) of the audio against those of every clip
  at a few speeds, by subsequence dynamic time warping, which tolerates time warping, level and
  a fixed equaliser.

Each finds the best-matching (clip, position) detections, keeps the `length` best that do not
overlap and reads them in time order. Test-only code: numpy and scipy are dev dependencies.
"""

from __future__ import annotations

import io
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.fft import dct, irfft, next_fast_len, rfft

from services.config import VOICES_DIR

RATE = 8000
# Length factors of the templates: fine steps, as a waveform drifts out of phase quickly. The
# first generator stretched clips by one of 0.90, 0.91, … 1.20 (captcha.audio), this grid has
# those exactly, and more on both sides.
NCC_STRETCHES = np.round(np.arange(0.80, 1.2501, 0.01), 2)
# Resampling a template moves its whole spectrum (like vocal tract length normalisation).
DTW_STRETCHES = (0.77, 0.88, 1.0, 1.14, 1.3)


def read_wav(data: bytes) -> np.ndarray:
    """Mono samples as float in [-1, 1], resampled to 8 kHz if needed."""
    with wave.open(io.BytesIO(data)) as wav:
        width, rate, frames = wav.getsampwidth(), wav.getframerate(), wav.readframes(-1)
        channels = wav.getnchannels()
    if width == 1:
        samples = (np.frombuffer(frames, np.uint8).astype(np.float64) - 128) / 128
    else:
        samples = np.frombuffer(frames, "<i2").astype(np.float64) / 32768
    samples = samples.reshape(-1, channels).mean(axis=1)
    if rate != RATE:
        samples = resample(samples, RATE / rate)
    return samples


def resample(samples: np.ndarray, factor: float) -> np.ndarray:
    """Stretch to factor × the length by linear interpolation (what a speed change does)."""
    count = max(2, round(len(samples) * factor))
    return np.interp(np.linspace(0, len(samples) - 1, count), np.arange(len(samples)), samples)


def trim(samples: np.ndarray, threshold: float = 0.02) -> np.ndarray:
    """Drop the near-silence espeak leaves around a clip."""
    loud = np.flatnonzero(np.abs(samples) > threshold)
    return samples[loud[0] : loud[-1] + 1] if len(loud) else samples


@dataclass(frozen=True)
class Clip:
    char: str
    samples: np.ndarray


def load_clips(voices_dir: Path = VOICES_DIR) -> list[Clip]:
    return [
        Clip(wav.parent.name, trim(read_wav(wav.read_bytes())))
        for wav in sorted(voices_dir.glob("*/*.wav"))
    ]


@dataclass(frozen=True)
class Detection:
    score: float  # higher is better
    start: int  # in samples
    end: int
    char: str


def pick(detections: list[Detection], length: int) -> str:
    """The `length` best detections that do not overlap by more than a third, in time order."""
    chosen: list[Detection] = []
    for found in sorted(detections, key=lambda d: -d.score):
        overlaps = (
            min(found.end, c.end) - max(found.start, c.start)
            > (min(found.end - found.start, c.end - c.start)) / 3
            for c in chosen
        )
        if not any(overlaps):
            chosen.append(found)
            if len(chosen) == length:
                break
    return "".join(d.char for d in sorted(chosen, key=lambda d: d.start))


def peaks(curve: np.ndarray, width: int, count: int) -> list[int]:
    """Positions of the `count` highest local maxima at least `width` apart."""
    found: list[int] = []
    curve = curve.copy()
    for _ in range(count):
        index = int(np.argmax(curve))
        if not np.isfinite(curve[index]):
            break
        found.append(index)
        curve[max(0, index - width) : index + width] = -np.inf
    return found


def loudest_windows(audio: np.ndarray, count: int, reach: float) -> list[tuple[int, int]]:
    """(start, moment) of ±`reach` s windows around the `count` loudest moments at least 0.6 s
    apart: where the spoken characters are, if they are louder than what is around them."""
    envelope = np.convolve(audio**2, np.ones(RATE // 20), mode="same")
    moments = peaks(envelope, int(0.6 * RATE), count)
    return [(max(0, moment - int(reach * RATE)), moment) for moment in moments]


def best_in_order(guesses: list[tuple[str, float, int]], length: int) -> str:
    """Of (char, match quality, where) guesses, the `length` best at distinct places (two
    windows over one long character find it twice), read in time order."""
    kept: list[tuple[str, float, int]] = []
    for guess in sorted(guesses, key=lambda g: -g[1]):
        if all(abs(guess[2] - other[2]) > RATE // 4 for other in kept):
            kept.append(guess)
    return "".join(g[0] for g in sorted(kept[:length], key=lambda g: g[2]))


def repeat_samples(samples: np.ndarray, factor: float) -> np.ndarray:
    """captcha.audio's change_speed: stretch by repeating (or dropping) samples."""
    count = int(len(samples) * factor)
    return samples[np.minimum((np.arange(count) / factor).astype(np.int64), len(samples) - 1)]


class TemplateBank:
    """Clips stretched by each factor, at 8 kHz / `decimation`, slid over a window by FFT."""

    def __init__(self, clips: list[Clip], stretches, stretch, decimation: int, reach: float):
        self.decimation = decimation
        self.chars, self.factors, self.templates = [], [], []
        for clip in clips:
            for factor in stretches:
                template = self.reduce(stretch(clip.samples, factor))
                self.chars.append(clip.char)
                self.factors.append(float(factor))
                self.templates.append((template - template.mean()).astype(np.float32))
        self.lengths = np.array([len(t) for t in self.templates])
        self.norms = np.array([np.linalg.norm(t) for t in self.templates])
        self.window = int(2 * reach * RATE / decimation)
        self.size = next_fast_len(self.window + int(self.lengths.max()))

    def reduce(self, samples: np.ndarray) -> np.ndarray:
        """Average each `decimation` samples: a crude low-pass, then a lower rate."""
        if self.decimation == 1:
            return samples
        usable = len(samples) // self.decimation * self.decimation
        return samples[:usable].reshape(-1, self.decimation).mean(axis=1)

    def best_per_char(
        self, window: np.ndarray, centre: int, near=None
    ) -> dict[str, tuple[float, float, int, float]]:
        """For each character (of `near`, {char: stretch}, default all, with stretches within
        0.035 of that): the most energy one of its templates explains (ncc² × energy, not ncc
        alone, else a clip that is all vowel, "E", beats a longer one sharing the vowel, "P",
        on the vowel alone) placed over the window's `centre` (8 kHz samples), that ncc, that
        offset (in 8 kHz samples) and that template's stretch."""
        centre //= self.decimation
        window = self.reduce(window)[: self.window]
        spectrum = rfft(window, self.size).astype(np.complex64)
        energy = np.concatenate([[0.0], np.cumsum(window**2)])
        total = np.concatenate([[0.0], np.cumsum(window)])
        chosen = [
            i
            for i, c in enumerate(self.chars)
            if near is None or (c in near and abs(self.factors[i] - near[c]) < 0.035)
        ]
        chosen = [i for i in chosen if self.lengths[i] < len(window)]
        best: dict[str, tuple[float, float, int, float]] = {}
        for first in range(0, len(chosen), 64):
            rows = chosen[first : first + 64]
            chunk = np.zeros((len(rows), self.size), np.float32)
            for row, index in enumerate(rows):
                chunk[row, : self.lengths[index]] = self.templates[index]
            # correlations[t, k] = sum(window[k:k+n] * template t) for every start k
            correlations = irfft(np.conj(rfft(chunk, axis=1)) * spectrum, self.size, axis=1)
            for row, index in enumerate(rows):
                n = self.lengths[index]
                window_energy = energy[n:] - energy[:-n]
                window_sum = total[n:] - total[:-n]
                local = np.sqrt(np.maximum(window_energy - window_sum**2 / n, 1e-12))
                ncc = correlations[row, : len(local)] / (local * self.norms[index])
                explained = ncc * np.abs(ncc) * local**2
                explained[: max(0, centre - n)] = -np.inf  # ends before the centre
                explained[centre + 1 :] = -np.inf  # starts after it
                at = int(np.argmax(explained))
                char = self.chars[index]
                if explained[at] > best.get(char, (-np.inf,))[0]:
                    found = (float(explained[at]), float(ncc[at]), at * self.decimation)
                    best[char] = (*found, self.factors[index])
        return best


class NccSolver:
    """Around each loud moment, slide every (clip, stretch) template over the waveform.

    Two passes, for speed: at 2 kHz with a coarse grid of stretches (tolerant: a waveform drifts
    out of phase slowly at a low rate) to shortlist characters and their stretch, then at 8 kHz
    with the fine grid around that stretch (the bursts that tell P from T are above 2 kHz).
    """

    def __init__(
        self,
        clips: list[Clip],
        stretches=NCC_STRETCHES,
        stretch=resample,
        reach: float = 0.9,
        shortlist: int = 5,
    ) -> None:
        coarse = np.arange(min(stretches), max(stretches) + 0.03, 0.03)
        self.coarse = TemplateBank(clips, coarse, resample, 4, reach)
        self.fine = TemplateBank(clips, stretches, stretch, 1, reach)
        self.reach = reach
        self.shortlist = shortlist

    def solve(self, audio: np.ndarray, length: int = 4) -> str:
        # Two windows more than characters: loud background speech (reversed or other clips)
        # matches worse than a character does, and is dropped.
        windows = loudest_windows(audio, length + 2, self.reach)
        guesses = []
        for start, moment in windows:
            window = audio[start : moment + int(self.reach * RATE)]
            char, ncc, offset = self.classify(window, moment - start)
            guesses.append((char, ncc, start + offset))
        return best_in_order(guesses, length)

    def classify(self, window: np.ndarray, centre: int) -> tuple[str, float, int]:
        """The best character over the window's centre, the ncc of its match and where in
        the window it starts."""
        coarse = self.coarse.best_per_char(window, centre)
        shortlist = sorted(coarse, key=lambda c: -coarse[c][0])[: self.shortlist]
        # The fine grid only near each shortlisted character's best coarse stretch.
        fine = self.fine.best_per_char(window, centre, {c: coarse[c][3] for c in shortlist})
        char = max(fine, key=lambda c: fine[c][0])
        return char, fine[char][1], fine[char][2]


FRAME, HOP, BANDS, CEPSTRA = 256, 80, 26, 13


def mel_filters() -> np.ndarray:
    def mel(hz):
        return 2595 * np.log10(1 + hz / 700)

    edges = 700 * (10 ** (np.linspace(mel(100), mel(3800), BANDS + 2) / 2595) - 1)
    bins = np.fft.rfftfreq(FRAME, 1 / RATE)
    filters = np.zeros((BANDS, len(bins)))
    for band in range(BANDS):
        low, mid, high = edges[band : band + 3]
        filters[band] = np.clip(
            np.minimum((bins - low) / (mid - low), (high - bins) / (high - mid)), 0, None
        )
    return filters


MEL = mel_filters()


def mfcc(samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Frames × cepstra 1..12 (level-free), and each frame's log energy."""
    if len(samples) < FRAME:
        samples = np.pad(samples, (0, FRAME - len(samples)))
    count = 1 + (len(samples) - FRAME) // HOP
    index = np.arange(FRAME)[None, :] + HOP * np.arange(count)[:, None]
    frames = samples[index] * np.hanning(FRAME)
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    cepstra = dct(np.log(power @ MEL.T + 1e-8), type=2, norm="ortho", axis=1)[:, 1:CEPSTRA]
    return cepstra, np.log(power.sum(axis=1) + 1e-8)


def subsequence_dtw(template: np.ndarray, audio: np.ndarray) -> np.ndarray:
    """Mean cost per template frame of the best warp of the template ending at each audio frame.

    Steps (1,1), (1,2) and (2,1): the template may be spoken at half to twice its speed.
    """
    cost = np.sqrt(((template[:, None, :] - audio[None, :, :]) ** 2).sum(axis=2))
    n, m = cost.shape
    big = np.inf
    previous2 = np.full(m, big)
    previous = cost[0].copy()  # a match may start at any audio frame
    for i in range(1, n):
        row = np.full(m, big)
        diagonal = np.full(m, big)
        diagonal[1:] = previous[:-1]
        slow = np.full(m, big)  # (1,2): template frame i spans two audio frames
        slow[2:] = previous[:-2] + cost[i, 1:-1]
        fast = np.full(m, big)  # (2,1): template frames i-1, i share one audio frame
        fast[1:] = previous2[:-1] + cost[i - 1, 1:]
        row = cost[i] + np.minimum(diagonal, np.minimum(slow, fast))
        previous2, previous = previous, row
    return previous / n


class DtwSolver:
    """Subsequence DTW of every (clip, speed) cepstrogram over the audio's cepstrogram."""

    def __init__(self, clips: list[Clip], stretches=DTW_STRETCHES, loudness: float = 1.0) -> None:
        self.templates = [
            (clip.char, mfcc(resample(clip.samples, stretch))[0])
            for clip in clips
            for stretch in stretches
        ]
        # The spoken characters are the loud parts: a match over a quiet stretch (background
        # speech, noise) loses this much score per unit of log energy below the loudest frame.
        self.loudness = loudness

    def solve(self, audio: np.ndarray, length: int = 4) -> str:
        features, energy = mfcc(audio)
        energy = energy - energy.max()
        running = np.concatenate([[0.0], np.cumsum(energy)])
        detections = []
        for char, template in self.templates:
            n = len(template)
            if n >= len(features):
                continue
            ends = np.arange(len(features))
            starts = np.maximum(0, ends - n + 1)
            mean_energy = (running[ends + 1] - running[starts]) / (ends + 1 - starts)
            score = -subsequence_dtw(template, features) + self.loudness * mean_energy
            for end in peaks(score, n // 2, 3):
                start = max(0, end - n)
                detections.append(Detection(float(score[end]), start * HOP, end * HOP, char))
        return pick(detections, length)
