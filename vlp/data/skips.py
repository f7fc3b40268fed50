"""Counting the examples a batch leaves out (unreadable images, empty captions, missing regions)."""

from __future__ import annotations

from dataclasses import dataclass, field

_REASONS = {
    "unreadable_image": ("unreadable image", "unreadable images"),
    "empty_caption": ("empty caption", "empty captions"),
    "missing_regions": ("image without region features", "images without region features"),
}


@dataclass
class SkipStats:
    """Examples seen and skipped (by reason), and the first few offending items for messages."""

    seen: int = 0
    unreadable_image: int = 0
    empty_caption: int = 0
    missing_regions: int = 0
    samples: list[str] = field(default_factory=list)

    MAX_SAMPLES = 5

    @property
    def skipped(self) -> int:
        return self.unreadable_image + self.empty_caption + self.missing_regions

    def note(self, reason: str, count: int, detail: str) -> None:
        setattr(self, reason, getattr(self, reason) + count)
        if len(self.samples) < self.MAX_SAMPLES:
            self.samples.append(detail)

    def add(self, other: SkipStats) -> None:
        self.seen += other.seen
        for reason in _REASONS:
            setattr(self, reason, getattr(self, reason) + getattr(other, reason))
        self.samples.extend(other.samples[: max(0, self.MAX_SAMPLES - len(self.samples))])

    def summary(self) -> str:
        """E.g. ``skipped 3 of 1000 examples (2 unreadable images, 1 empty caption)``."""
        parts = []
        for reason, (one, many) in _REASONS.items():
            count = getattr(self, reason)
            if count:
                parts.append(f"{count} {one if count == 1 else many}")
        detail = f" ({', '.join(parts)})" if parts else ""
        return f"skipped {self.skipped} of {self.seen} examples{detail}"

    def report(self) -> str:
        """:meth:`summary` and the first few offending items (``...; first: unreadable image a.jpg: ...``)."""
        return self.summary() + (f"; first: {'; '.join(self.samples)}" if self.samples else "")

    def to_dict(self) -> dict:
        counts = {reason: getattr(self, reason) for reason in _REASONS}
        return {"seen": self.seen, **counts, "samples": list(self.samples)}

    @classmethod
    def from_dict(cls, state: dict) -> SkipStats:
        counts = {k: int(v) for k, v in state.items() if k == "seen" or k in _REASONS}
        return cls(**counts, samples=[str(s) for s in state.get("samples", [])][: cls.MAX_SAMPLES])


class TooManyBadExamples(ValueError):
    """More unreadable images / empty captions than ``data.max_bad_fraction`` allows."""
