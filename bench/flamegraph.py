"""A flame graph (SVG) from py-spy's raw output (collapsed stacks: "f1;f2;f3 count" per line).

  python -m bench.flamegraph profile.collapsed.txt out.svg [--title TEXT]

py-spy writes one format per recording; the benchmark records `--format raw` once (for the
category table of bench/profile_summary.py) and draws the SVG from the same samples here, so
the table and the picture describe the same seconds. Self-contained SVG: hover a box for its
function, file and share of samples.
"""

from __future__ import annotations

import argparse
import html
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from bench.profile_summary import LINE_RE, _short

WIDTH = 1400
ROW = 16
FONT = 11
MIN_WIDTH_PX = 0.3  # boxes narrower than this are not drawn


@dataclass
class Node:
    name: str
    count: int = 0
    children: dict[str, Node] = field(default_factory=dict)


def load(raw: Path) -> Node:
    root = Node("all")
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        if not frames[0].startswith("<module>"):
            continue  # executor threads parked on their queue (as in profile_summary)
        n = int(count)
        root.count += n
        node = root
        for frame in frames:
            frame = LINE_RE.sub(")", _short(frame))  # one box per function, not per line
            node = node.children.setdefault(frame, Node(frame))
            node.count += n
    return root


def _color(name: str) -> str:
    """Warm colours, stable per function; our own code green, libraries by family."""
    h = zlib.crc32(name.split(" (")[0].encode()) % 60
    if "(services/" in name or "(handlers/" in name:
        return f"rgb({80 + h},{190 + h // 2},{90})"
    if "redis/" in name or "aiomysql/" in name or "pymysql/" in name:
        return f"rgb({90 + h},{150 + h},{220})"
    if "tornado/" in name:
        return f"rgb({225},{120 + h},{50 + h})"
    return f"rgb({230},{170 + h},{60 + h // 2})"


def render(root: Node, title: str) -> str:
    depth = _depth(root)
    height = (depth + 3) * ROW
    scale = WIDTH / max(1, root.count)
    boxes: list[str] = []

    def draw(node: Node, x: float, level: int) -> None:
        w = node.count * scale
        if w < MIN_WIDTH_PX:
            return
        y = height - (level + 2) * ROW
        pct = 100 * node.count / max(1, root.count)
        label = html.escape(node.name)
        text = html.escape(_fit(node.name.split(" (")[0], w))
        boxes.append(
            f"<g><title>{label} — {node.count} samples, {pct:.2f} %</title>"
            f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{ROW - 1}" '
            f'fill="{_color(node.name)}" rx="1"/>'
            + (f'<text x="{x + 2:.1f}" y="{y + ROW - 4}">{text}</text>' if text else "")
            + "</g>"
        )
        cx = x
        for child in sorted(node.children.values(), key=lambda c: c.name):
            draw(child, cx, level + 1)
            cx += child.count * scale

    draw(root, 0.0, 0)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'font-family="monospace" font-size="{FONT}">'
        f'<rect width="100%" height="100%" fill="#fdfdf6"/>'
        f'<text x="4" y="{ROW}" font-size="13">{html.escape(title)}</text>'
        + "".join(boxes)
        + "</svg>\n"
    )


def _depth(node: Node) -> int:
    return 1 + max((_depth(c) for c in node.children.values()), default=0)


def _fit(name: str, width_px: float) -> str:
    chars = int(width_px / (FONT * 0.62))
    if chars < 3:
        return ""
    return name if len(name) <= chars else name[: chars - 1] + "…"


def write_svg(raw: Path, out: Path, title: str) -> None:
    out.write_text(render(load(raw), title), encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("raw", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--title", default="py-spy profile")
    args = parser.parse_args()
    write_svg(args.raw, args.out, args.title)


if __name__ == "__main__":
    main()
