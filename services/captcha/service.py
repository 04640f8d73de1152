"""CAPTCHAs: random text kept in Redis, image or audio rendered off the event loop, one use only."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import hmac
import io
import logging
import secrets
from collections.abc import Iterable
from concurrent.futures import Executor

from services.captcha.audio import load_voices, render_wav
from services.captcha.image import FastImageCaptcha
from services.config import CaptchaConfig, LimitsConfig
from services.errors import Ret, ServiceError
from services.metrics import Metrics
from services.store import keys
from services.store.limits import Limit, RateLimiter
from services.store.redisclient import RedisClient, decoded
from services.validation import MAX_CAPTCHA_ANSWER, is_captcha_id

CAPTCHA_CONTENT_TYPE = "image/jpeg"
AUDIO_CONTENT_TYPE = "audio/wav"
REFILL_BATCH = 8  # images per trip to a render process: amortizes the IPC
TRIPS_PER_PROCESS = 2  # batches in flight per render process: it draws while one travels

log = logging.getLogger(__name__)


@functools.cache
def _renderer(width: int, height: int) -> FastImageCaptcha:
    # One per process and size: it keeps the glyph masks it has drawn (services/captcha/image.py).
    return FastImageCaptcha(width=width, height=height)


def render_jpegs(texts: list[str], width: int, height: int) -> list[bytes]:
    """Draw each text as a JPEG. Blocking CPU work: runs in a render process or thread."""
    images = []
    for text in texts:
        buffer = io.BytesIO()
        _renderer(width, height).generate_image(text).save(buffer, format="JPEG", quality=70)
        images.append(buffer.getvalue())
    return images


class CaptchaService:
    """Creates CAPTCHAs and checks answers against them."""

    def __init__(
        self,
        redis: RedisClient,
        render_executor: Executor,
        limiter: RateLimiter,
        metrics: Metrics,
        config: CaptchaConfig,
        limits: LimitsConfig,
    ) -> None:
        self._redis = redis
        self._metrics = metrics
        # Images are drawn in worker processes where configured: render threads would fight
        # the event loop for the GIL, which costs more CPU than the IPC (docs/PERFORMANCE.md).
        self._render_executor = render_executor
        self._limiter = limiter
        self._config = config
        self._per_ip_minute = limits.captcha_per_ip_minute
        self._audio_cost = limits.audio_captcha_cost
        # A few images drawn ahead, so a request usually takes a ready one (one Redis SET).
        self._ready: collections.deque[tuple[str, bytes]] = collections.deque()
        # Requests that found the pool empty (a sustained flood), served first come first from
        # the next batches: a trip per REFILL_BATCH images, not one per request.
        self._waiting: collections.deque[asyncio.Future[tuple[str, bytes]]] = collections.deque()
        self._drawing = 0  # images in batches on their way from the render executor
        self._refills: set[asyncio.Task[None]] = set()
        self._trips = TRIPS_PER_PROCESS * max(1, config.render_processes)
        # A flood of images served all at once would fill every turn of the event loop, and
        # every other request would wait for whole turns: a few at a time keep the turns short.
        self._in_progress = asyncio.Semaphore(config.max_in_progress)
        load_voices()  # reads the samples once, at start-up (render processes: on first use)

    def start(self) -> None:
        """Begin drawing the ready pool (call on the running loop)."""
        self._schedule_refill()

    async def close(self) -> None:
        for task in list(self._refills):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        while self._waiting:
            self._waiting.popleft().cancel()

    def new_text(self) -> str:
        """A random CAPTCHA text from the look-alike-free alphabet (secrets, not random)."""
        alphabet = self._config.alphabet
        return "".join(secrets.choice(alphabet) for _ in range(self._config.length))

    async def create(self, captcha_id: str, client_ip: str, requester: str) -> bytes:
        """Store a new CAPTCHA under captcha_id and return its JPEG image.

        An id belongs to the requester who asked for it first (`requester`: a stable digest of
        the browser's XSRF token) while it lives: they may ask again for a new image, anyone
        else is refused, so nobody can change the answer another browser is typing.
        """
        if not is_captcha_id(captcha_id):
            raise ServiceError(Ret.PARAMERR, "图片验证码编号格式错误", field="image_code")
        async with self._in_progress:
            await self._limiter.take(self._ip_limit(client_ip))
            await self._claim(captcha_id, requester)
            text, image = await self._next_image()
            await self._redis.set(keys.captcha_key(captcha_id), text, ex=self._config.ttl)
        return image

    async def _claim(self, captcha_id: str, requester: str) -> None:
        # SET NX GET: one atomic step that both claims a free id and tells who holds a taken one.
        holder = await self._redis.set(
            keys.captcha_owner_key(captcha_id), requester, ex=self._config.ttl, nx=True, get=True
        )
        if holder is not None and holder != requester:
            raise ServiceError(
                Ret.DATAEXIST, "图片验证码编号已被占用，请刷新后重试", field="image_code"
            )
        if holder is not None:  # the owner renews its image: the id lives as long as it
            await self._redis.expire(keys.captcha_owner_key(captcha_id), self._config.ttl)

    async def _next_image(self) -> tuple[str, bytes]:
        """A ready (text, image) pair, or the next one drawn if the pool is empty."""
        if not self._config.pool_size:  # no pool: each request draws its own
            text = self.new_text()
            [image] = await self._render([text])
            return text, image
        if self._ready:
            pair = self._ready.popleft()
            self._schedule_refill()
            return pair
        waiter: asyncio.Future[tuple[str, bytes]] = asyncio.get_running_loop().create_future()
        self._waiting.append(waiter)
        self._schedule_refill()
        return await waiter

    async def _render(self, texts: list[str]) -> list[bytes]:
        # Rendering takes milliseconds of CPU: on the loop it would stall every other request.
        loop = asyncio.get_running_loop()
        images = await loop.run_in_executor(
            self._render_executor, render_jpegs, texts, self._config.width, self._config.height
        )
        self._metrics.captchas.labels("image").inc(len(images))
        return images

    def _wanted(self) -> int:
        """Images still to order: a full pool and one for each waiting request."""
        return self._config.pool_size + len(self._waiting) - len(self._ready) - self._drawing

    def _schedule_refill(self) -> None:
        if not self._config.pool_size:
            return
        while self._wanted() > 0 and len(self._refills) < self._trips:
            task = asyncio.get_running_loop().create_task(self._refill())
            self._refills.add(task)
            task.add_done_callback(self._refills.discard)

    async def _refill(self) -> None:
        try:
            while self._wanted() > 0:
                texts = [self.new_text() for _ in range(REFILL_BATCH)]
                self._drawing += len(texts)
                try:
                    images = await self._render(texts)
                finally:
                    self._drawing -= len(texts)
                self._hand_out(zip(texts, images, strict=True))
        except Exception as error:
            # The waiting requests fail (a JSON error, not a hang); the next request retries.
            log.exception("could not refill the CAPTCHA pool")
            while self._waiting:
                waiter = self._waiting.popleft()
                if not waiter.done():
                    waiter.set_exception(error)

    def _hand_out(self, pairs: Iterable[tuple[str, bytes]]) -> None:
        for pair in pairs:
            while self._waiting and self._waiting[0].done():  # its request went away
                self._waiting.popleft()
            if self._waiting:
                self._waiting.popleft().set_result(pair)
            else:
                self._ready.append(pair)

    async def audio(self, captcha_id: str, client_ip: str) -> bytes:
        """The same CAPTCHA spoken, as WAV, for people who cannot read the image."""
        if not is_captcha_id(captcha_id):
            raise ServiceError(Ret.PARAMERR, "图片验证码编号格式错误", field="image_code")
        # Speech recognition reads an audio CAPTCHA more cheaply than a model reads an image, so
        # listening costs several images' worth of the per-IP budget (docs/CAPTCHA.md).
        await self._limiter.take(self._ip_limit(client_ip, cost=self._audio_cost))
        # Plain GET, not GETDEL: listening is not an attempt, the answer still must be typed.
        text = await self._redis.get(keys.captcha_key(captcha_id))
        if text is None:
            raise ServiceError(Ret.NODATA, "图片验证码失效", field="image_code")
        # Tens of ms of numpy work: in the render process, where it cannot hold the loop's GIL.
        loop = asyncio.get_running_loop()
        audio = await loop.run_in_executor(self._render_executor, render_wav, decoded(text))
        self._metrics.captchas.labels("audio").inc()
        return audio

    def _ip_limit(self, client_ip: str, cost: int = 1) -> Limit:
        return Limit(
            keys.captcha_ip_minute_key(client_ip),
            self._per_ip_minute,
            60,
            "captcha_ip_minute",
            "图片验证码请求过于频繁，请{seconds}秒后重试",
            cost=cost,
        )

    async def consume(self, captcha_id: str, answer: str) -> None:
        """Check an answer; the CAPTCHA is gone afterwards whether the answer was right or not."""
        # GETDEL is one atomic step: of many concurrent requests only one can see the text.
        stored = await self._redis.getdel(keys.captcha_key(captcha_id))
        if stored is None:
            raise captcha_refusal(expired=True)
        if not hmac.compare_digest(decoded(stored).upper().encode(), answer.upper().encode()):
            raise captcha_refusal(expired=False)


def captcha_refusal(*, expired: bool) -> ServiceError:
    """NODATA for a CAPTCHA that is gone (expired or used), DATAERR for a wrong answer."""
    if expired:
        return ServiceError(Ret.NODATA, "图片验证码失效", field="image_code")
    return ServiceError(Ret.DATAERR, "图片验证码错误", field="image_code")


def check_captcha_params(captcha_id: object, answer: object) -> tuple[str, str]:
    """Validate the CAPTCHA id and answer a client sent (PARAMERR if malformed)."""
    if not is_captcha_id(captcha_id):
        raise ServiceError(Ret.PARAMERR, "图片验证码编号格式错误", field="image_code")
    if not isinstance(answer, str) or not 0 < len(answer) <= MAX_CAPTCHA_ANSWER:
        raise ServiceError(Ret.PARAMERR, "图片验证码格式错误", field="image_code")
    return captcha_id, answer
