"""Helpers shared by the benchmark scripts: paths, data readers, the process set-up and the record of
a run (machine, load, results files). The cached benchmark indexes: ``bench_index.py``; the app and
Chroma server processes benchmarks start: ``servers.py``."""
from __future__ import annotations

import csv
import datetime as dt
import json
import os
import platform
import shlex
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
BENCH = SHARED / "bench"
RESULTS_DIR = ROOT / "benchmarks" / "results"
CACHE_DIR = ROOT / "benchmarks" / ".cache"  # git-ignored

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def prepare_env() -> str | None:
    """A benchmark's entry-point set-up, first thing in ``main()``: the project's process defaults
    (``ingest.environment.prepare_process``) and quiet tokenizers. Returns the caller's own
    ``OMP_WAIT_POLICY`` (None when unset), read before the default is set."""
    from ingest.environment import prepare_process

    caller_omp = os.environ.get("OMP_WAIT_POLICY")
    prepare_process()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    return caller_omp


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def require(path: Path) -> Path:
    if not path.exists():
        raise SystemExit(f"benchmark data not found: {path} (expected ../shared/bench beside the project)")
    return path


def read_jsonl(path: Path) -> list[dict]:
    with open(require(path), encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def ag_news(limit: int | None = None) -> Iterator[tuple[str, str, str]]:
    """(class, title, description) rows of AG News test.csv (no header)."""
    with open(require(BENCH / "ag_news" / "test.csv"), encoding="utf-8", newline="") as fh:
        for i, row in enumerate(csv.reader(fh)):
            if limit is not None and i >= limit:
                return
            yield row[0], row[1], row[2]


def scifact_corpus(limit: int | None = None) -> list[dict]:
    out = []
    with open(require(BENCH / "scifact" / "corpus.jsonl"), encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                out.append(json.loads(line))
                if limit is not None and len(out) >= limit:
                    break
    return out


def scifact_queries() -> dict[str, str]:
    return {str(r["_id"]): r["text"] for r in read_jsonl(BENCH / "scifact" / "queries.jsonl")}


def scifact_qrels() -> dict[str, dict[str, int]]:
    qrels: dict[str, dict[str, int]] = {}
    with open(require(BENCH / "scifact" / "qrels" / "test.tsv"), encoding="utf-8") as fh:
        next(fh)  # header
        for line in fh:
            if line.strip():
                q, d, s = line.rstrip("\n").split("\t")
                qrels.setdefault(q, {})[d] = int(s)
    return qrels


def ingest_cached(settings, folders, embedder=None, progress: bool = False):
    """Bring a cached benchmark index up to date with ``folders`` (``ingest.pipeline.Ingestor``;
    an unchanged corpus costs a scan). A cache whose chunk vectors were made another way than
    ``settings.chunk_vectors`` (``QA_CHUNK_VECTORS``) keeps its recipe, as users' indexes do, so it
    is rebuilt here: the benchmarks measure what a new index gets. Returns the last run's report."""
    from ingest.pipeline import Ingestor

    ingestor = Ingestor(settings, embedder=embedder, progress=progress)
    report = ingestor.run(list(folders))
    if ingestor.store.chunk_vectors != settings.chunk_vectors:
        say(f"{settings.index_dir}: chunk vectors made as {ingestor.store.chunk_vectors}, not "
            f"{settings.chunk_vectors}; rebuilding")
        report = Ingestor(settings, embedder=embedder, progress=progress).run(list(folders), rebuild=True)
    return report


def markdown_file(title: str, body: str) -> str:
    """A corpus .md file with a YAML front-matter title (JSON strings are valid YAML scalars)."""
    title = " ".join(title.split())
    return f"---\ntitle: {json.dumps(title, ensure_ascii=False)}\n---\n{body.strip()}\n"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def machine() -> dict[str, Any]:
    """CPUs available to this process, CPU model, Python version (cheap: imports nothing)."""
    try:
        nproc = len(os.sched_getaffinity(0))
    except AttributeError:
        nproc = os.cpu_count()
    return {"nproc": nproc, "cpu_model": cpu_model(), "python": platform.python_version()}


def now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def machine_info() -> dict[str, Any]:
    """``machine()``, the date, and the versions of the inference packages (imports them)."""
    info: dict[str, Any] = {**machine(), "date": now_iso()}
    for name in ("torch", "sentence_transformers", "onnxruntime"):
        try:
            info[name] = __import__(name).__version__
        except Exception:
            pass
    return info


def children_cpu() -> float:
    """CPU seconds (user + system) of this process's child processes that have ended so far."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def peak_rss_mb(pid: int) -> float | None:
    """Peak resident memory (VmHWM) of a running process, from /proc; None if unknown."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def command_line() -> str:
    script = Path(sys.argv[0])
    try:
        script = script.resolve().relative_to(ROOT)
    except ValueError:
        pass
    return shlex.join(["python", str(script), *sys.argv[1:]])


def update_results(path: Path, key: str, result: dict[str, Any]) -> None:
    """Keep the latest result per configuration ``key`` in a JSON file (``{"runs": {key: ...}}``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data: dict[str, Any] = {}
    if path.exists():
        try:
            data = json.loads(path.read_text())
        except ValueError:
            data = {}
    data.setdefault("runs", {})[key] = result
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default)."""
    import numpy as np

    return float(np.percentile(np.asarray(values, dtype=float), q)) if values else float("nan")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------------------------- one run
def uptime_load() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


@dataclass
class Run:
    """One measuring run (latency.py, cold_start.py, load.py): the caller's ``OMP_WAIT_POLICY``
    (part of the results key: PyTorch's OpenMP threads spin-wait unless told otherwise) and the
    machine's load when it started (the machine is shared)."""

    caller_omp: str | None
    uptime: str
    load: list[float] | None

    @classmethod
    def start(cls) -> "Run":
        """Set up the process (``prepare_env``) and note the machine's state."""
        run = cls(prepare_env(), uptime_load(), loadavg())
        say(f"start: {run.uptime}")
        return run

    def record(self, name: str, key: str, figures: dict[str, Any], **env: Any) -> None:
        """Keep the run in benchmarks/results/<name>.json (latest per configuration ``key``, with
        date, command, CPU and load) and print the figures as the last stdout line."""
        figures["env"] = {"OMP_WAIT_POLICY_set_by_caller": self.caller_omp, **env}
        key += f",OMP_WAIT_POLICY={self.caller_omp}" if self.caller_omp else ""
        context = {"date": now_iso(), "command": command_line(), **machine(), "uptime_at_start": self.uptime,
                   "load_at_start": self.load, "load_at_end": loadavg()}
        path = RESULTS_DIR / f"{name}.json"
        update_results(path, key, {"figures": figures, **context})
        say(f"written to {path}")
        print(json.dumps(figures))
