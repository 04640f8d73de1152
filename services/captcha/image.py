"""The image CAPTCHA of the `captcha` package, drawn for a fraction of its CPU.

`captcha.image.ImageCaptcha` spends about 2 ms of CPU per 160×60 image, mostly on Pillow
round trips it repeats for every character: it draws the glyph with FreeType again, on an RGBA
image, then rotates it (bilinear), resizes it (bicubic) and warps it (quad), each a new image,
turns it into a mask through a 256-entry table that Pillow rounds in Python on every call, and
asks the OS for every random number (`secrets`, about 180 `urandom` calls per image).

`FastImageCaptcha` draws the same picture from the same random choices, with the package's own
parameters (fonts and sizes, ±30° rotation, the quad warp and its ranges, spaces between
characters, overlap, the final squeeze, 30 noise dots, the noise arc, the SMOOTH filter, random
background and text colours), but:

- each glyph's coverage mask is drawn once per process and font size ('L', cropped) and reused;
- rotation, resize and quad warp are one map from the output back to the glyph (a rotation and
  a scale after a bilinear quad map are a bilinear quad map again), so one QUAD transform of a
  small 'L' mask does what three RGBA transforms did, with one resampling instead of three;
- the picture is two colours and one alpha: the text masks, the dots and the arc are drawn in
  one 'L' alpha layer (text in the package's opacity table, made once per image), the SMOOTH
  filter runs on that one channel (it is linear, so smoothing the alpha smooths the picture),
  and the text colour is pasted once through it onto the background.
"""

from __future__ import annotations

import math
import random
import secrets

from captcha.image import ImageCaptcha
from PIL import Image, ImageDraw, ImageFilter
from PIL.ImageFont import FreeTypeFont

# Glyph metrics and mask: the package's text box of one character (right and bottom edges from
# (1, 1), the size the character is warped to) and the cropped coverage (None: nothing drawn).
Glyph = tuple[int, int, Image.Image | None]
Quad = tuple[float, ...]  # where the output's NW, SW, SE and NE corners come from
# A character, the upper left corner of its box in the image, its warped mask.
PlacedGlyph = tuple[str, tuple[int, int], Image.Image]
SEED_BYTES = 32
NOISE_DOTS = 30


def rotation_back(width: int, height: int, degrees: float) -> tuple[tuple[float, ...], int, int]:
    """Pillow's `rotate(degrees, expand=True)` as the affine map from output to input pixels.

    Same arithmetic as `PIL.Image.Image.rotate`, so the warp below lands where the package's
    rotate-then-resize would have put it. Returns the map and the expanded size.
    """
    angle = -math.radians(degrees)
    cos, sin = round(math.cos(angle), 15), round(math.sin(angle), 15)
    centre_x, centre_y = width / 2, height / 2
    shift_x = cos * -centre_x + sin * -centre_y + centre_x
    shift_y = -sin * -centre_x + cos * -centre_y + centre_y
    xs, ys = [], []
    for x, y in ((0, 0), (width, 0), (width, height), (0, height)):
        xs.append(cos * x + sin * y + shift_x)
        ys.append(-sin * x + cos * y + shift_y)
    new_width = math.ceil(max(xs)) - math.floor(min(xs))
    new_height = math.ceil(max(ys)) - math.floor(min(ys))
    dx, dy = -(new_width - width) / 2.0, -(new_height - height) / 2.0
    shift_x, shift_y = cos * dx + sin * dy + shift_x, -sin * dx + cos * dy + shift_y
    return (cos, sin, shift_x, -sin, cos, shift_y), new_width, new_height


class FastImageCaptcha(ImageCaptcha):
    """`ImageCaptcha` with its distortions kept and its repeated work done once."""

    def __init__(self, width: int = 160, height: int = 60) -> None:
        super().__init__(width=width, height=height)
        self._glyphs: dict[tuple[int, str], Glyph] = {}
        # The package's opacity table, clipped as Pillow's point() clips it.
        self._opacity = [min(255, value) for value in self.lookup_table]

    def generate_image(
        self,
        chars: str,
        bg_color: tuple[int, ...] | None = None,
        fg_color: tuple[int, ...] | None = None,
    ) -> Image.Image:
        # The text is the secret and comes from `secrets` (CaptchaService.new_text). The
        # geometry only has to be unpredictable: one seed of 256 bits from the OS per image
        # feeds a Mersenne Twister for that image alone, so no image tells anything about
        # another (no state shared across images or forked processes), and the ~60 draws cost
        # nanoseconds instead of a system call each.
        rng = random.Random(secrets.token_bytes(SEED_BYTES))
        background = bg_color or tuple(rng.randint(238, 255) for _ in range(3))
        # The package's text alpha (220-255) changes nothing visible: its mask comes from the
        # colour's luminance (the opacity table below), not from the alpha.
        color = fg_color or tuple(rng.randint(10, 200) for _ in range(3))
        alpha = self._text_alpha(chars, color[:3], rng)
        self._draw_noise(alpha, rng)
        alpha = alpha.filter(ImageFilter.SMOOTH)
        image = Image.new("RGB", (self._width, self._height), background[:3])
        image.paste(color[:3], (0, 0, self._width, self._height), alpha)
        return image

    def _glyph(self, font_index: int, char: str) -> Glyph:
        key = (font_index, char)
        if key not in self._glyphs:
            font = self.truefonts[font_index]
            _, _, right, bottom = ImageDraw.Draw(Image.new("L", (1, 1))).multiline_textbbox(
                (1, 1), char, font=font
            )
            self._glyphs[key] = (int(right), int(bottom), _coverage(char, font, right, bottom))
        return self._glyphs[key]

    def _text_alpha(self, chars: str, color: tuple[int, ...], rng: random.Random) -> Image.Image:
        coverage = Image.new("L", (self._width, self._height))
        for _, corner, warped in self.layout(chars, rng):
            coverage.paste(255, corner, warped)
        # The package's glyphs are flat colour wherever they touch a pixel, and its mask is
        # its table of that colour's luminance (text in a dark colour is drawn faint): every
        # touched pixel gets that one opacity. One table per image instead of one per glyph.
        # (Where two faint glyphs overlap the package darkens twice; this does not.)
        luminance = (color[0] * 19595 + color[1] * 38470 + color[2] * 7471 + 0x8000) >> 16
        return coverage.point([0] + [self._opacity[luminance]] * 255)

    def layout(self, chars: str, rng: random.Random) -> list[PlacedGlyph]:
        """Each character's warped mask and where it goes, spaces and overlap included."""
        glyphs: list[tuple[str, int, int, Image.Image | None, Quad]] = []
        for char in chars:
            if rng.random() > self.word_space_probability:
                glyphs.append((" ", *self._warped(" ", rng)))
            glyphs.append((char, *self._warped(char, rng)))
        text_width = sum(glyph[1] for glyph in glyphs)
        # The package draws on a canvas as wide as the text, then squeezes it to the image
        # width: each glyph is squeezed on its own here instead (same place, same size).
        squeeze = min(1.0, self._width / text_width)
        average = int(text_width / len(chars))
        overlap = int(self.word_offset_dx * average)
        offset = int(average * 0.1)
        placed: list[PlacedGlyph] = []
        for char, width, height, mask, quad in glyphs:
            if mask is not None:
                left = round(offset * squeeze)
                size = (max(1, round((offset + width) * squeeze) - left), height)
                warped = mask.transform(size, Image.Transform.QUAD, quad, Image.Resampling.BILINEAR)
                placed.append((char, (left, int((self._height - height) / 2)), warped))
            offset = offset + width - rng.randint(0, overlap)
        return placed

    def _warped(self, char: str, rng: random.Random) -> tuple[int, int, Image.Image | None, Quad]:
        """A glyph and the quad that rotates, resizes and warps it, from the package's ranges."""
        width, height, mask = self._glyph(rng.randrange(len(self.truefonts)), char)
        low, high = self.character_rotate
        degrees = low + rng.random() * (high - low)
        # The package's warp ranges, precedence included (w * r * 0.2 + 0.1).
        dx = width * rng.random() * (self.character_warp_dx[1] - self.character_warp_dx[0])
        dx += self.character_warp_dx[0]
        dy = height * rng.random() * (self.character_warp_dy[1] - self.character_warp_dy[0])
        dy += self.character_warp_dy[0]
        x1, y1 = int(rng.random() * 2 * dx - dx), int(rng.random() * 2 * dy - dy)
        x2, y2 = int(rng.random() * 2 * dx - dx), int(rng.random() * 2 * dy - dy)
        if mask is None:  # a space: only its width counts
            return width, height, None, (0.0,) * 8
        warp_width, warp_height = width + abs(x1) + abs(x2), height + abs(y1) + abs(y2)
        corners = (
            (x1, y1),
            (-x1, warp_height - y2),
            (warp_width + x2, warp_height + y2),
            (warp_width - x2, -y1),
        )
        back, rotated_width, rotated_height = rotation_back(mask.width, mask.height, degrees)
        scale_x, scale_y = rotated_width / warp_width, rotated_height / warp_height
        a, b, c, d, e, f = back
        quad: list[float] = []
        for warp_x, warp_y in corners:  # a corner of the warp, in the rotated glyph, in the glyph
            x, y = warp_x * scale_x, warp_y * scale_y
            quad += (a * x + b * y + c, d * x + e * y + f)
        return width, height, mask, tuple(quad)

    def _draw_noise(self, alpha: Image.Image, rng: random.Random) -> None:
        """The package's 30 dots and arc, in full ink (it draws them opaque)."""
        draw = ImageDraw.Draw(alpha)
        width, height = alpha.size
        # Uniform on 0..width and 0..height as randint would be (bias below 2**-45), for a
        # fraction of randint's cost: these are most of an image's random numbers.
        for _ in range(NOISE_DOTS):
            x, y = int(rng.random() * (width + 1)), int(rng.random() * (height + 1))
            draw.line(((x, y), (x - 1, y - 1)), fill=255, width=3)
        x1 = rng.randint(0, width // 5)
        x2 = rng.randint(0, width - width // 5) + width // 5
        y1 = rng.randint(0, height - 2 * (height // 5)) + height // 5
        y2 = rng.randint(0, height - y1 - height // 5) + y1
        draw.arc((x1, y1, x2, y2), rng.randint(0, 20), rng.randint(160, 200), fill=255)


def _coverage(char: str, font: FreeTypeFont, right: float, bottom: float) -> Image.Image | None:
    canvas = Image.new("L", (int(right) + 1, int(bottom) + 1))
    ImageDraw.Draw(canvas).text((0, 0), char, font=font, fill=255)
    box = canvas.getbbox()
    return canvas.crop(box) if box else None
