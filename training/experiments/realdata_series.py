"""`python -m training realdata series`: the default LSTM recipe (residual on the airline-model base) on real
monthly, quarterly and weekly series bundled by PyPI packages (statsmodels, sktime; nothing is downloaded),
trained through the project's CLI with its defaults; the table goes into docs/real-data.md between the
series markers. Each row: the exported file's test RMSE (stepped as the agent steps it) beside seasonal naive
and SARIMA(0,1,1)(0,1,1)s (host only), the test months' interval coverage, and what the recipe chose.
Short series (6-8 years) are the last years of longer recordings: real data, the length a user may have.
"""

from __future__ import annotations

import concurrent.futures
import logging
import multiprocessing
import statistics
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.models.manifest import ModelEntry, read_manifest
from training.cli import main as train
from training.paths import PROJECT_ROOT

log = logging.getLogger(__name__)

DOC = PROJECT_ROOT / "docs" / "real-data.md"
BEGIN, END = "<!-- series:begin -->", "<!-- series:end -->"
Loader = Callable[[], tuple[list[str], np.ndarray]]


@dataclass(frozen=True)
class Series:
    name: str
    load: Loader
    unit: str
    what: str


def co2_monthly(start: str, end: str = "2001") -> Loader:
    def load() -> tuple[list[str], np.ndarray]:
        from statsmodels.datasets import co2

        monthly = co2.load_pandas().data["co2"].resample("MS").mean().interpolate()[start:end]
        return [d.strftime("%Y-%m") for d in monthly.index], monthly.to_numpy()
    return load


def co2_weekly(start: str) -> Loader:
    def load() -> tuple[list[str], np.ndarray]:
        from statsmodels.datasets import co2

        weekly = co2.load_pandas().data["co2"].interpolate()[start:]
        return [d.strftime("%Y-%m-%d") for d in weekly.index], weekly.to_numpy()
    return load


def elnino(first_year: int) -> Loader:
    def load() -> tuple[list[str], np.ndarray]:
        from statsmodels.datasets import elnino as data

        table = data.load_pandas().data
        table = table[table["YEAR"] >= first_year]
        months = table.columns[1:]
        return ([f"{int(y)}-{m + 1:02d}" for y in table["YEAR"] for m in range(len(months))],
                table[months].to_numpy().ravel())
    return load


def elec_equip(start: str) -> Loader:
    def load() -> tuple[list[str], np.ndarray]:
        from statsmodels.datasets import elec_equip as data

        frame = getattr(data.load(), "data", data.load())[start:]
        return [d.strftime("%Y-%m") for d in frame.index], frame.iloc[:, 0].to_numpy()
    return load


def unemployment() -> tuple[list[str], np.ndarray]:
    from statsmodels.datasets import macrodata

    table = macrodata.load_pandas().data
    return [f"{int(y)}Q{int(q)}" for y, q in zip(table["year"], table["quarter"])], table["unemp"].to_numpy()


def sktime_series(loader: str, start: str | None = None) -> Loader:
    def load() -> tuple[list[str], np.ndarray]:
        import sktime.datasets

        series = getattr(sktime.datasets, loader)()
        series = series[start:] if start else series
        return [str(p)[:7] for p in series.index], series.to_numpy(np.float64)
    return load


def seatbelts(start: str | None = None) -> Loader:
    """UK drivers and passengers killed or seriously injured per month, 1969-1984 (sktime's copy)."""
    def load() -> tuple[list[str], np.ndarray]:
        import pandas as pd
        import sktime

        table = pd.read_csv(Path(sktime.__file__).parent / "datasets" / "data" / "seatbelts" / "seatbelts.csv",
                            index_col=0)
        table = table[start:] if start else table
        return [d[:7] for d in table.index], table["KSI"].to_numpy(np.float64)
    return load


SERIES = [
    Series("airline", sktime_series("load_airline"), "passengers", "the lecture's series, 1949-1960"),
    Series("co2", co2_monthly("1980"), "ppm", "Mauna Loa CO2 1980-2001 (weekly averaged to months): trend + cycle"),
    Series("elnino", elnino(1980), "deg C", "Pacific sea-surface temperature 1980-2010: seasonal, no trend"),
    Series("elec_equip", elec_equip("1995"), "index", "EU electrical-equipment orders 1995-2016 (2008 crash)"),
    Series("seatbelts", seatbelts(), "casualties", "UK road casualties (KSI) 1969-1984 (seat-belt law 1983)"),
    Series("pbs_sera", sktime_series("load_PBS_dataset"), "scripts", "Australian immune-sera scripts 1991-2008: "
           "small counts with zeros (no log)"),
    Series("us_unemployment", unemployment, "%", "US unemployment by quarter 1959-2009 (seasonally adjusted)"),
    Series("airline_6y", lambda: (lambda d, v: (d[:72], v[:72]))(*sktime_series("load_airline")()), "passengers",
           "short: the airline series' first 6 years"),
    Series("co2_8y", co2_monthly("1994"), "ppm", "short: CO2 1994-2001"),
    Series("elnino_8y", elnino(2003), "deg C", "short: El Nino 2003-2010"),
    Series("seatbelts_8y", seatbelts("1977"), "casualties", "short: road casualties 1977-1984"),
    Series("elec_equip_7y", elec_equip("2009-06"), "index", "short: electrical-equipment orders 2009-2016"),
    Series("co2_weekly_6y", co2_weekly("1996"), "ppm", "short, weekly: Mauna Loa CO2 by week 1996-2001 (season 52)"),
]

HEADER = ("| series | n (freq) | test months | horizon | chosen | correction weight | exported file test RMSE "
          "(quantization) | seasonal naive | SARIMA (host only) | file / SARIMA | file / seasonal naive | "
          "coverage 80% | coverage 95% |\n" + "| --- " * 13 + "|")


def write_series_csv(path: Path, dates: list[str], values: np.ndarray) -> None:
    path.write_text("\n".join(["date,value", *(f"{d},{float(v):.6g}" for d, v in zip(dates, values))]) + "\n")


def train_one(name: str, work: Path) -> tuple[ModelEntry | None, int]:
    """One series through the CLI with its defaults (a worker process of `run` when --jobs > 1)."""
    series = next(s for s in SERIES if s.name == name)
    dates, values = series.load()
    csv = work / f"{series.name}.csv"
    write_series_csv(csv, dates, values)
    out = work / series.name
    code = train(["lstm", "--dataset", f"{csv}:value", "--out", str(out), "--report", str(work / series.name)])
    entry = read_manifest(out / "manifest.json").get("lstm") if code == 0 else None
    if entry is not None:
        entry.training["n"] = f"{len(values)} ({entry.metrics['horizon'].split()[1]}s)"
    return entry, code


def row(series: Series, entry: ModelEntry | None, code: int) -> str:
    if entry is None:
        return f"| {series.name} | refused (exit {code}) |" + " — |" * 11
    m, base = entry.metrics, entry.metrics["baselines_rmse"]
    naive, sarima = base.get("seasonal_naive", base["persistence"]), base.get("sarima")
    t = entry.training
    chosen = f"{t['transform']}, {t['base']}" + (" (default: short)" if "default_because" in t else "")
    cov = m["test_coverage"]
    cells = [series.name, f"{entry.training.get('n', '')}", m["test_months"], m["horizon"], chosen,
             f"{entry.postprocess['correction']['weight']:g}", f"{m['test_rmse']:.4g} ({entry.variant})",
             f"{naive:.4g}",
             f"{sarima:.4g}" if sarima else "—", f"{m['test_rmse'] / sarima:.3f}" if sarima else "—",
             f"{m['test_rmse'] / naive:.3f}", f"{cov['0.8']:.1%}", f"{cov['0.95']:.1%}"]
    return "| " + " | ".join(cells) + " |"


def summary(entries: list[ModelEntry]) -> str:
    """The acceptance numbers over every series: never worse than seasonal naive, median vs SARIMA, pooled
    coverage (months, not series, weighted), how often the correction was admitted."""
    if not entries:
        return "No series trained."
    months = [int(e.metrics["test_months"].split("-")[1]) - int(e.metrics["test_months"].split("-")[0]) + 1
              for e in entries]
    naive_ok = sum(e.metrics["test_rmse"] <= e.metrics["baselines_rmse"].get("seasonal_naive", np.inf)
                   for e in entries)
    ratios = [e.metrics["test_rmse"] / e.metrics["baselines_rmse"]["sarima"] for e in entries
              if e.metrics["baselines_rmse"].get("sarima")]
    pooled = {c: sum(e.metrics["test_coverage"][c] * n for e, n in zip(entries, months)) / sum(months)
              for c in ("0.8", "0.95")}
    admitted = sum(e.postprocess["correction"]["weight"] > 0 for e in entries)
    return (f"- test RMSE <= seasonal naive: **{naive_ok}/{len(entries)}** series; median file / SARIMA: "
            f"**{statistics.median(ratios):.3f}** (over {len(ratios)})\n"
            f"- pooled test-month interval coverage ({sum(months)} months): **{pooled['0.8']:.1%}** at 80% nominal, "
            f"**{pooled['0.95']:.1%}** at 95% nominal\n"
            f"- LSTM correction admitted (weight > 0 on the held-out months) on **{admitted}/{len(entries)}** series; "
            "elsewhere the device's forecast is the base recursion alone\n")


def write_doc(text: str) -> None:
    """Replace the series block of docs/real-data.md (the section is appended the first time)."""
    before, begin, rest = DOC.read_text().partition(BEGIN)
    after = rest.partition(END)[2] if begin else "\n"
    heading = "" if begin else "\n## Forecasts (LSTM)\n\n"
    DOC.write_text(f"{before.rstrip(chr(10)) + chr(10) if not begin else before}{heading}{BEGIN}\n{text}{END}{after}")


def run(only: list[str] | None, output: Path | None, write: bool, jobs: int = 1) -> int:
    """Each series trained in its own process when `jobs` > 1 (TensorFlow is not fork-safe: spawned);
    rows in the table's order."""
    chosen = [s for s in SERIES if not only or s.name in only]
    results: dict[str, tuple[ModelEntry | None, int]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        if jobs > 1:
            context = multiprocessing.get_context("spawn")
            with concurrent.futures.ProcessPoolExecutor(jobs, mp_context=context) as pool:
                futures = {pool.submit(train_one, s.name, Path(tmp)): s.name for s in chosen}
                for future in concurrent.futures.as_completed(futures):
                    results[futures[future]] = future.result()
                    log.warning("realdata series: %s done (%d of %d)", futures[future], len(results), len(chosen))
        else:
            for series in chosen:
                results[series.name] = train_one(series.name, Path(tmp))
                if output:
                    output.write_text("\n".join([HEADER, *(row(s, *results[s.name]) for s in chosen
                                                           if s.name in results)]) + "\n")
    lines = [HEADER, *(row(s, *results[s.name]) for s in chosen)]
    entries = [results[s.name][0] for s in chosen if results[s.name][0] is not None]
    text = ("Generated by `python -m training realdata series` (defaults: `python -m training lstm --dataset "
            "FILE.csv:value`).\n\n" + "\n".join(lines) + "\n\n" + summary(entries) + "\n"  # type: ignore[arg-type]
            + "\n".join(f"- **{s.name}** ({s.unit}): {s.what}" for s in chosen) + "\n")
    print(text)
    if output:
        output.write_text(text)
    if write:
        write_doc(text)
    return 0 if len(entries) == len(chosen) else 1
