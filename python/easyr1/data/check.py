"""``easyr1 check-data PATH``: read a dataset end to end and report rows, bad rows and image sizes."""

from __future__ import annotations

import argparse
import statistics
from dataclasses import dataclass, field, replace

from easyr1.config import DataConfig

from .dataset import EditDataset, build_decoder, build_source
from .errors import DataError, DataStats

EXIT_OK, EXIT_FAILED = 0, 1


@dataclass
class SizeStats:
    """Stored sizes of one image column."""

    widths: list[int] = field(default_factory=list)
    heights: list[int] = field(default_factory=list)
    refit: int = 0
    """Images that reading resizes: a side above ``max_long_side`` (when set), or a pixel count outside
    ``[min_pixels, max_pixels]``."""

    def add(self, size: tuple[int, int] | None, cfg: DataConfig) -> None:
        if size is None:
            return
        w, h = size
        self.widths.append(w)
        self.heights.append(h)
        too_long = cfg.max_long_side is not None and max(w, h) > cfg.max_long_side
        if too_long or not cfg.min_pixels <= w * h <= cfg.max_pixels:
            self.refit += 1

    def row(self) -> list[str]:
        if not self.widths:
            return ["-"] * 5
        pixels = [w * h for w, h in zip(self.widths, self.heights, strict=True)]
        return [
            f"{min(self.widths)}x{min(self.heights)}",
            f"{statistics.median(self.widths):.0f}x{statistics.median(self.heights):.0f}",
            f"{max(self.widths)}x{max(self.heights)}",
            f"{statistics.fmean(pixels) / 1e6:.3f}",
            str(self.refit),
        ]


def scan(dataset: EditDataset, cfg: DataConfig) -> tuple[DataStats, SizeStats, SizeStats]:
    """Read every row in stored order, skipping (and counting) bad ones."""
    stats = DataStats()
    source_sizes, edited_sizes = SizeStats(), SizeStats()
    for _, sample in dataset.iter_epoch(0, stats=stats):
        source_sizes.add(sample.source_original_size, cfg)
        edited_sizes.add(sample.edited_original_size, cfg)
    return stats, source_sizes, edited_sizes


def check_data_command(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console()
    pattern = args.pattern
    if args.format == "jsonl" and pattern == "*.parquet":  # the CLI's default is the seed one
        pattern = None
    cfg = replace(DataConfig(), format=args.format, train_files=args.path, pattern=pattern, on_bad_row=args.on_bad_row)
    try:
        source = build_source(cfg.format, args.path, cfg.pattern, cfg.train_split)
        # Skip mode internally so every bad row is counted; the exit code still follows --on-bad-row.
        dataset = EditDataset(
            source,
            build_decoder(cfg),
            name="check-data",
            on_bad_row="skip",
            shuffle_buffer_rows=cfg.shuffle_buffer_rows,
            read_batch_rows=cfg.read_batch_rows,
            decode_threads=cfg.decode_threads,
        )
        stats, source_sizes, edited_sizes = scan(dataset, cfg)
    except DataError as exc:
        console.print(f"[red]easyr1 check-data: {escape(str(exc))}[/red]")
        return EXIT_FAILED

    # Paths, reasons and messages are user text: escaped, or rich would read "[short, detailed]" as markup.
    console.print(f"{escape(source.description)}: {source.num_rows} rows stored, {stats.rows_read} read")
    if stats.bad_rows:
        table = Table(title="bad rows by reason")
        table.add_column("reason")
        table.add_column("rows", justify="right")
        for reason, count in sorted(stats.bad_rows.items()):
            table.add_row(escape(reason), str(count))
        console.print(table)
    else:
        console.print("bad rows: none")
    limit = f", long side ≤ {cfg.max_long_side}" if cfg.max_long_side is not None else ""
    sizes = Table(title=f"stored image sizes (pixel range {cfg.min_pixels}..{cfg.max_pixels}{limit})")
    for column in ("image", "min", "median", "max", "mean Mpx", "resized"):
        sizes.add_column(column, justify="right" if column != "image" else "left")
    sizes.add_row("source", *source_sizes.row())
    sizes.add_row("preliminary edit", *edited_sizes.row())
    console.print(sizes)

    if stats.bad_rows and args.on_bad_row == "error":
        console.print(f"[red]first bad row: {escape(str(stats.first_bad_row))}[/red]")
        return EXIT_FAILED
    if stats.bad_rows:
        console.print(f"{stats.bad_rows_total} bad rows would be skipped (--on-bad-row skip)")
    return EXIT_OK
