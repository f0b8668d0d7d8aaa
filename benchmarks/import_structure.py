"""The import structure of the toolkit, measured from the code, for this checkout and (with
`--against REV`) a git revision side by side: the same code reads both.

Static, from the source (`tests/_import_graph.py`, the reading tests/test_layers.py checks):
- circles: modules that import each other in a ring (function-level imports included);
- imports that run up the layers: against the folders' layers (`LAYERS` of each checkout's
  tests/test_layers.py, its per-module exceptions left out), and how many such exceptions the
  table needs;
- files over 300 lines (toolkit/, tests/, benchmarks/);
- what a new subcommand, logits-stage method or model family has to find: string switches on
  the subcommand name (`command == "generate"`), copies that read a method's own layers
  (`getattr(options, method.layers_key)`), per-model-type tables (module-level dicts keyed by
  transformers model types) outside `graft/families.py`.

Dynamic: the toolkit files that `cli.py generate` passes through, traced with sys.setprofile on
the tiny recipe (recipes/tiny.yaml: the built-in tiny Llama, and a checkpoint grafted from it by
`cli.py graft`): every toolkit file whose functions run, and, while `recipes.models.load_model`
runs, the timeline of the toolkit file that is running (a call into another file or a return
to one is a step; a file the timeline comes back to counts again: how often loading bounces
through `recipes/models.py`). Code that runs while a toolkit module is imported (class bodies,
decorators, registrations) is left out of both, so where an import happens does not count. Two new tokens on one thread; timings are not the point.

    python3 benchmarks/import_structure.py --against b59b0a2 --out bench_results/import_structure.json
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import _import_graph as graph_of  # noqa: E402

LONG = 300
PARTS = ("toolkit", "tests", "benchmarks")

TRACE = r'''
import json, os, sys
from pathlib import Path

root, out, argv = Path(sys.argv[1]).resolve(), sys.argv[2], json.loads(sys.argv[3])
package = str(root / "toolkit") + os.sep
MODELS = os.path.join("toolkit", "recipes", "models.py")
files, timeline, state = set(), [], {"loading": None, "done": False}

def ours(code):
    return code.co_filename.startswith(package) and code.co_name != "<module>"

def where(frame):
    while frame is not None and not ours(frame.f_code):
        frame = frame.f_back
    return None if frame is None else os.path.relpath(frame.f_code.co_filename, root)

def importing(frame):
    """Whether `frame` runs while a toolkit module is imported (its class bodies, decorators)."""
    while frame is not None:
        code = frame.f_code
        if code.co_name == "<module>" and code.co_filename.startswith(package):
            return True
        frame = frame.f_back
    return False

def profile(frame, event, arg):
    if event not in ("call", "return") or not ours(frame.f_code) or importing(frame):
        return
    name = os.path.relpath(frame.f_code.co_filename, root)
    files.add(name)
    if (event == "call" and not state["done"] and state["loading"] is None
            and name == MODELS and frame.f_code.co_name == "load_model"):
        state["loading"] = frame
    if state["loading"] is None:
        return
    here = name if event == "call" else where(frame.f_back)
    if here and (not timeline or timeline[-1] != here):
        timeline.append(here)
    if event == "return" and frame is state["loading"]:
        state["loading"], state["done"] = None, True

from toolkit.cli.main import main
sys.setprofile(profile)
try:
    code = main(argv)
finally:
    sys.setprofile(None)
Path(out).write_text(json.dumps({"exit": code, "files": sorted(files), "load": timeline}))
'''


def checkout(rev: str, into: Path) -> Path:
    """The files of `rev` (git archive) unpacked under `into`."""
    archive = into / "tree.tar"
    subprocess.run(["git", "-C", str(ROOT), "archive", "-o", str(archive), rev], check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(into / "tree", filter="data")
    return into / "tree"


def long_files(root: Path) -> dict[str, int]:
    found = {}
    for part in PARTS:
        for path in sorted((root / part).rglob("*.py")):
            lines = len(path.read_text(encoding="utf-8").splitlines())
            if lines > LONG:
                found[path.relative_to(root).as_posix()] = lines
    return found


def _files(root: Path, part: str = "toolkit") -> list[Path]:
    return sorted((root / part).rglob("*.py"))


def command_switches(root: Path) -> dict[str, int]:
    """Comparisons of a name `command` with something (a subcommand's string switch)."""
    found: dict[str, int] = {}
    for path in _files(root):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Compare) and getattr(node.left, "id", None) == "command":
                key = path.relative_to(root).as_posix()
                found[key] = found.get(key, 0) + 1
    return found


def layers_key_reads(root: Path) -> dict[str, int]:
    """`getattr(x, <something>.layers_key)` calls: a copy reading a method's own layers."""
    found: dict[str, int] = {}
    for path in _files(root):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "getattr"
                    and len(node.args) >= 2 and getattr(node.args[1], "attr", None) == "layers_key"):
                key = path.relative_to(root).as_posix()
                found[key] = found.get(key, 0) + 1
    return found


def model_type_tables(root: Path) -> dict[str, list[str]]:
    """Module-level dicts whose keys are all transformers model types, by file."""
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    found: dict[str, list[str]] = {}
    for path in _files(root):
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            target = node.target if isinstance(node, ast.AnnAssign) else (
                node.targets[0] if isinstance(node, ast.Assign) else None)
            value = getattr(node, "value", None)
            if not isinstance(value, ast.Dict) or not value.keys or not hasattr(target, "id"):
                continue
            keys = [getattr(k, "value", None) for k in value.keys]
            if all(isinstance(k, str) and k in CONFIG_MAPPING_NAMES for k in keys):
                found.setdefault(path.relative_to(root).as_posix(), []).append(target.id)
    return found


def static(root: Path) -> dict:
    edges = graph_of.graph(root)
    table = graph_of.layer_table(root)
    folders = graph_of.folder_table(root, table)
    up = graph_of.against_layers(edges, folders)
    return {
        "modules": len(edges),
        "imports": sum(len(t) for t in edges.values()),
        "circles": graph_of.circles(edges),
        "layer_exceptions": sorted(set(table) - set(folders)),
        "against_folder_layers": [f"{a} -> {b}" for a, b in up],
        "against_own_table": [f"{a} -> {b}" for a, b in graph_of.against_layers(edges, table)],
        "files_over_300": long_files(root),
        "command_switches": command_switches(root),
        "layers_key_reads": layers_key_reads(root),
        "model_type_tables_outside_families": {
            k: v for k, v in model_type_tables(root).items() if k != "toolkit/graft/families.py"},
    }


def trace(root: Path, work: Path, argv: list[str]) -> dict:
    out = work / "trace.json"
    env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1",
           "SURGERY_CACHE": str(work / "cache"), "HF_HUB_OFFLINE": "1"}
    subprocess.run([sys.executable, "-c", TRACE, str(root), str(out), json.dumps(argv)],
                   cwd=root, env=env, check=True, stdout=subprocess.DEVNULL)
    found = json.loads(out.read_text())
    load = found["load"]
    models = "toolkit/recipes/models.py"
    return {"files": len(found["files"]), "files_passed": found["files"],
            "load_timeline": load, "load_steps": len(load),
            "load_files": sorted(set(load)),
            "recipes_models_entries": load.count(models),
            "recipes_models_hands_to": sorted({load[i + 1] for i in range(len(load) - 1)
                                               if load[i] == models})}


def dynamic(root: Path, work: Path) -> dict:
    """Traces of `generate` on the tiny recipe: the built-in tiny model, and a checkpoint."""
    env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1",
           "SURGERY_CACHE": str(work / "cache"), "HF_HUB_OFFLINE": "1"}
    ckpt = work / "ckpt"
    subprocess.run([sys.executable, "cli.py", "graft", "recipes/tiny.yaml",
                    f"output_dir={ckpt}"], cwd=root, env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    common = ["generate", "recipes/tiny.yaml", "generate.prompts=[Hello]",
              "decoding.max_new_tokens=2"]
    return {"tiny": trace(root, work, common),
            "checkpoint": trace(root, work, [*common, "model.tiny=null", f"model.path={ckpt}"])}


def measure(root: Path) -> dict:
    with tempfile.TemporaryDirectory(prefix="import-structure-") as work:
        return {"static": static(root), "generate": dynamic(root, Path(work))}


def _row(name: str, values: list) -> str:
    return f"| {name} | " + " | ".join(str(v) for v in values) + " |"


def table(results: dict[str, dict]) -> str:
    labels = list(results)
    s = {k: v["static"] for k, v in results.items()}
    g = {k: v["generate"] for k, v in results.items()}
    rows = [
        "| measure | " + " | ".join(labels) + " |",
        "|---|" + "---|" * len(labels),
        _row("modules / imports", [f"{s[k]['modules']} / {s[k]['imports']}" for k in labels]),
        _row("circles", [len(s[k]["circles"]) for k in labels]),
        _row("imports against the folders' layers",
             [len(s[k]["against_folder_layers"]) for k in labels]),
        _row("per-module layer exceptions", [len(s[k]["layer_exceptions"]) for k in labels]),
        _row("toolkit files over 300 lines",
             [sum(p.startswith("toolkit/") for p in s[k]["files_over_300"]) for k in labels]),
        _row("test files over 300 lines",
             [sum(p.startswith("tests/") for p in s[k]["files_over_300"]) for k in labels]),
        _row("subcommand string switches",
             [sum(s[k]["command_switches"].values()) for k in labels]),
        _row("copies reading a method's layers",
             [sum(s[k]["layers_key_reads"].values()) for k in labels]),
        _row("model-type tables outside families.py",
             [sum(map(len, s[k]["model_type_tables_outside_families"].values())) for k in labels]),
    ]
    for run in ("tiny", "checkpoint"):
        rows += [
            _row(f"generate ({run}): toolkit files passed through",
                 [g[k][run]["files"] for k in labels]),
            _row(f"generate ({run}): load_model, files / steps between files",
                 [f"{len(g[k][run]['load_files'])} / {g[k][run]['load_steps']}" for k in labels]),
            _row(f"generate ({run}): load_model, times in recipes/models.py",
                 [g[k][run]["recipes_models_entries"] for k in labels]),
            _row(f"generate ({run}): load_model, where recipes/models.py hands control",
                 [", ".join(f.removeprefix("toolkit/") for f in g[k][run]["recipes_models_hands_to"])
                  for k in labels]),
        ]
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--against", help="a git revision measured beside this checkout")
    parser.add_argument("--out", default="bench_results/import_structure.json")
    args = parser.parse_args()
    results = {}
    if args.against:
        with tempfile.TemporaryDirectory(prefix="import-structure-rev-") as tmp:
            results[args.against] = measure(checkout(args.against, Path(tmp)))
    results["this checkout"] = measure(ROOT)
    print(table(results))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
