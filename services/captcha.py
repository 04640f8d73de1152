"""Image CAPTCHAs: random text kept in Redis, image rendered off the event loop, one use only."""

from __future__ import annotations

import asyncio
import hmac
import io
import secrets
from concurrent.futures import Executor

from captcha.audio import AudioCaptcha
from captcha.image import ImageCaptcha

from services import keys
from services.config import VOICES_DIR, Config
from services.errors import Ret, ServiceError
from services.limits import Limit, RateLimiter
from services.metrics import Metrics
from services.validation import MAX_CAPTCHA_ANSWER, is_captcha_id

CAPTCHA_CONTENT_TYPE = "image/jpeg"
AUDIO_CONTENT_TYPE = "audio/wav"


class CaptchaService:
    """Creates CAPTCHAs and checks answers against them."""

    def __init__(
        self, redis, executor: Executor, limiter: RateLimiter, metrics: Metrics, config: Config
    ) -> None:
        self._redis = redis
        self._metrics = metrics
        self._executor = executor
        self._limiter = limiter
        self._config = config.captcha
        self._per_ip_minute = config.limits.captcha_per_ip_minute
        self._renderer = ImageCaptcha(width=self._config.width, height=self._config.height)
        self._speaker = AudioCaptcha(str(VOICES_DIR))
        self._speaker.load()  # reads the samples once, at start-up, not per request

    def new_text(self) -> str:
        """A random CAPTCHA text from the look-alike-free alphabet (secrets, not random)."""
        alphabet = self._config.alphabet
        return "".join(secrets.choice(alphabet) for _ in range(self._config.length))

    async def create(self, captcha_id: str, client_ip: str) -> bytes:
        """Store a new CAPTCHA under captcha_id and return its JPEG image."""
        if not is_captcha_id(captcha_id):
            raise ServiceError(Ret.PARAMERR, "图片验证码编号格式错误", field="image_code")
        await self._limiter.take(self._ip_limit(client_ip))
        text = self.new_text()
        # Rendering takes milliseconds of CPU: on the loop it would stall every other request.
        loop = asyncio.get_running_loop()
        image = await loop.run_in_executor(self._executor, self.render, text)
        self._metrics.captchas.labels("image").inc()
        await self._redis.set(keys.captcha_key(captcha_id), text, ex=self._config.ttl)
        return image

    async def audio(self, captcha_id: str, client_ip: str) -> bytes:
        """The same CAPTCHA spoken, as WAV, for people who cannot read the image."""
        if not is_captcha_id(captcha_id):
            raise ServiceError(Ret.PARAMERR, "图片验证码编号格式错误", field="image_code")
        await self._limiter.take(self._ip_limit(client_ip))
        # Plain GET, not GETDEL: listening is not an attempt, the answer still must be typed.
        text = await self._redis.get(keys.captcha_key(captcha_id))
        if text is None:
            raise ServiceError(Ret.NODATA, "图片验证码失效", field="image_code")
        loop = asyncio.get_running_loop()
        audio = await loop.run_in_executor(self._executor, self.speak, text)
        self._metrics.captchas.labels("audio").inc()
        return audio

    def _ip_limit(self, client_ip: str) -> Limit:
        return Limit(
            keys.captcha_ip_minute_key(client_ip),
            self._per_ip_minute,
            60,
            "captcha_ip_minute",
            "图片验证码请求过于频繁，请{seconds}秒后重试",
        )

    def speak(self, text: str) -> bytes:
        """Spoken text as WAV (blocking: call it in an executor)."""
        return bytes(self._speaker.generate(text))

    def render(self, text: str) -> bytes:
        """Draw text as a JPEG (blocking: call it in an executor)."""
        buffer = io.BytesIO()
        self._renderer.generate_image(text).save(buffer, format="JPEG", quality=70)
        return buffer.getvalue()

    async def consume(self, captcha_id: str, answer: str) -> None:
        """Check an answer; the CAPTCHA is gone afterwards whether the answer was right or not."""
        # GETDEL is one atomic step: of many concurrent requests only one can see the text.
        stored = await self._redis.getdel(keys.captcha_key(captcha_id))
        if stored is None:
            raise ServiceError(Ret.NODATA, "图片验证码失效", field="image_code")
        if not hmac.compare_digest(stored.upper().encode(), answer.upper().encode()):
            raise ServiceError(Ret.DATAERR, "图片验证码错误", field="image_code")


def check_captcha_params(captcha_id: object, answer: object) -> tuple[str, str]:
    """Validate the CAPTCHA id and answer a client sent (PARAMERR if malformed)."""
    if not is_captcha_id(captcha_id):
        raise ServiceError(Ret.PARAMERR, "图片验证码编号格式错误", field="image_code")
    if not isinstance(answer, str) or not 0 < len(answer) <= MAX_CAPTCHA_ANSWER:
        raise ServiceError(Ret.PARAMERR, "图片验证码格式错误", field="image_code")
    return captcha_id, answer
