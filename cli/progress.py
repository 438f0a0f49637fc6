"""The rich progress display of ``train-sequence`` (implements ``querylearn.continual.fit.Progress``)."""

from __future__ import annotations


class RichProgress:
    """Rich progress bar per epoch with the running loss and ETA."""

    def __init__(self, console=None):
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=console,
            transient=True,
        )
        self._loss: dict = {}

    def start(self, description: str, total: int):
        if not self.progress.live.is_started:
            self.progress.start()
        handle = self.progress.add_task(description, total=total, loss="-")
        self._loss[handle] = []
        return handle

    def advance(self, handle, loss: float | None = None) -> None:
        if loss is not None:
            self._loss[handle].append(loss)
        recent = self._loss[handle][-50:]
        shown = f"{sum(recent) / len(recent):.4f}" if recent else "-"
        self.progress.update(handle, advance=1, loss=shown)

    def stop(self, handle) -> None:
        self.progress.remove_task(handle)
        self._loss.pop(handle, None)

    def epoch_end(self, label: str, record: dict) -> None:
        sel = record.get("selection")
        extra = "".join(
            f" {k[6:]} {v:.4f}" for k, v in record.items() if k.startswith("train_") and k != "train_loss"
        )
        valid = "n/a" if sel is None else f"{sel:.4f}"
        self.progress.console.print(
            f"{label} epoch {record['epoch']}: loss {record['train_loss']:.4f}{extra}, valid "
            f"{valid}{' *' if record['improved'] else ''} ({record['seconds']:.1f}s)",
            highlight=False,
        )

    def close(self) -> None:
        if self.progress.live.is_started:
            self.progress.stop()


class StepProgress:
    """Rich progress bars for ``querylearn.progress.track`` loops (one bar per loop, removed when it
    ends); the display starts with the first bar and stops at :meth:`close`."""

    def __init__(self, console=None):
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TextColumn("eta"), TimeRemainingColumn(), console=console, transient=True,
        )

    def start(self, description: str, total: int | None):
        if not self.progress.live.is_started:
            self.progress.start()
        return self.progress.add_task(description, total=total)

    def advance(self, handle) -> None:
        self.progress.update(handle, advance=1)

    def stop(self, handle) -> None:
        self.progress.remove_task(handle)

    def close(self) -> None:
        if self.progress.live.is_started:
            self.progress.stop()
