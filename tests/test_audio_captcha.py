"""The audio CAPTCHA against a program: template matching with the shipped clips, and its price.

The attack (tests/audio_solver.py) is what solved every audio CAPTCHA of the first generator:
normalised cross-correlation with every clip of assets/voices/ at a fine grid of speeds, plus a
feature-based variant (MFCC, dynamic time warping). Run against main's generator it solves
9–10 of 10 (docs/CAPTCHA.md has the numbers and the command).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from services.captcha.audio import render_wav
from services.config import CaptchaConfig
from services.store import keys
from tests.audio_solver import DtwSolver, NccSolver, load_clips, read_wav, resample
from tests.conftest import serving
from tests.flows import assert_refusal

SAMPLES = 12  # CAPTCHAs attacked: at most one in ten may be solved, i.e. at most 1 here
INTRO = int(0.8 * 8000)  # an attacker skips the beeps at the start (the first character
# starts later than this in both generators)


@pytest.fixture(scope="module")
def solvers():
    clips = load_clips()
    return NccSolver(clips), DtwSolver(clips)


def solved_by(solvers, audio: bytes, text: str) -> list[str]:
    samples = read_wav(audio)[INTRO:]
    return [type(s).__name__ for s in solvers if s.solve(samples, len(text)) == text]


def test_solvers_read_clips_that_are_only_stretched_and_scaled(solvers):
    """The attack works: shipped clips, stretched and scaled as the first generator did, with
    quiet noise between them, are read back (so a pass below means something)."""
    clips = load_clips()
    rng = np.random.default_rng(7)
    captchas = []
    for _ in range(4):
        chosen = [clips[i] for i in rng.integers(len(clips), size=4)]
        parts = [np.zeros(8000)]
        for clip in chosen:
            speed = rng.integers(90, 121) / 100  # as captcha.audio draws it
            stretched = resample(clip.samples, speed) * rng.uniform(0.8, 1.2)
            parts += [stretched, np.zeros(int(rng.uniform(4000, 8000)))]
        audio = np.concatenate(parts)
        audio += rng.normal(0, 0.003, len(audio))
        captchas.append(("".join(clip.char for clip in chosen), audio[INTRO:]))
    # Of 16 characters (chance: under 1). NCC reads them all; DTW confuses some letters that
    # share a vowel (X/F, H/A) but still reads most.
    at_least = {NccSolver: 14, DtwSolver: 8}
    for ncc_or_dtw in solvers:
        read = 0
        for text, audio in captchas:
            answer = ncc_or_dtw.solve(audio, 4)
            read += sum(heard == said for heard, said in zip(answer, text, strict=False))
        assert read >= at_least[type(ncc_or_dtw)], (type(ncc_or_dtw).__name__, read)


@pytest.mark.timeout(300)  # about 1.5 CPU-seconds per CAPTCHA, more on a busy machine
@pytest.mark.gen_test(timeout=290)
async def test_template_matching_solves_at_most_one_served_audio_captcha_in_ten(make_app, solvers):
    """The generator the server serves from, attacked on a fixed set of renderings.

    The sample is seeded (texts and renderings), not drawn afresh: a solve rate measured on
    12 random draws would fail now and then at any true rate above zero, a flake rather than
    a finding. The server is asked for one audio CAPTCHA to show it serves this generator.
    """
    app = await make_app()
    async with serving(app) as client:
        text = await client.new_captcha("listen")
        response = await client.fetch("/api/v1.0/image_codes/listen/audio")
        assert response.code == 200 and response.headers["Content-Type"] == "audio/wav"
        assert len(read_wav(response.body)) > len(text) * 8000 * 0.3  # every character spoken
    alphabet = CaptchaConfig().alphabet
    draw = np.random.default_rng(2026)
    solved = []
    for seed in range(SAMPLES):
        text = "".join(draw.choice(list(alphabet), size=4))
        if by := solved_by(solvers, render_wav(text, seed=seed), text):
            solved.append((text, by))
    assert len(solved) <= SAMPLES // 10, solved


def test_same_text_never_sounds_the_same():
    """Each request is a new rendering: no two are alike, nor a template of the other."""
    first, second = (read_wav(render_wav("AC34")) for _ in range(2))
    n = min(len(first), len(second))
    assert len(first) != len(second) or not np.allclose(first, second)
    correlation = np.corrcoef(first[:n], second[:n])[0, 1]
    assert abs(correlation) < 0.2


def test_seeded_rendering_is_repeatable_for_tests():
    assert render_wav("AC34", seed=3) == render_wav("AC34", seed=3)


@pytest.mark.gen_test(timeout=60)
async def test_audio_captcha_costs_more_than_an_image(make_mode_app):
    """With 5 CAPTCHAs per IP a minute: an image (1) and an audio (3) fit, a second audio does
    not (and counts nothing), one more image does. On standalone Redis and on a cluster."""
    app = await make_mode_app(limits={"captcha_per_ip_minute": 5})
    async with serving(app) as client:
        assert await client.new_captcha("cost-1")
        assert (await client.fetch("/api/v1.0/image_codes/cost-1/audio")).code == 200
        response = await client.fetch("/api/v1.0/image_codes/cost-1/audio")
        assert response.headers["Content-Type"].startswith("application/json"), "audio served"
        assert_refusal(response, json.loads(response.body), "captcha_ip_minute", 50, 60)
        assert await client.new_captcha("cost-2")  # the refused audio took nothing
        response = await client.fetch("/api/v1.0/image_codes/cost-3")
        assert_refusal(response, json.loads(response.body), "captcha_ip_minute", 50, 60)
        assert not await client.app.services.redis.exists(keys.captcha_key("cost-3"))
