"""The benchmark protocol, the one source of published quality figures: fair tuning, paper and common heads,
equal views, seeds, curves, claims.

One command per table (each resumable: every training run writes its JSON as it finishes
and a re-run skips it):

    python benchmarks/protocol.py --table main        # every method, its paper's head, its recipe's views
    python benchmarks/protocol.py --table heads       # every method with one common head
    python benchmarks/protocol.py --table views       # SimCLR, GroCo, S2R2 at 2 and 4 views
    python benchmarks/protocol.py --table multicrop   # GroCo: 2 global + 4 small views vs 2 views
    python benchmarks/protocol.py --table s2r2_views  # S2R2 at 2, 4, 8, 16 views, 256 images per batch
    python benchmarks/protocol.py --table claims      # the papers' claims, from the tables' JSON only
    python benchmarks/protocol.py --table main --plan [--measure]  # runs needed, cost (measure s/step first)
    python benchmarks/protocol.py --table costs       # s/step of every row measured by --measure
    python benchmarks/protocol.py --table main --size small   # a minute: the test suite runs it
    python benchmarks/protocol.py --table views --finished-only  # a table from the finished runs only
    python benchmarks/protocol.py --probe SimCLR/paper/4 --lr 0.01  # one configuration off the grid
    options: --dataset digits|two_digits|fashion_mnist, --methods ..., --views 16 ..., --device cuda, --out DIR,
             --jobs N (train a grid's runs and a row's seeds in N processes; same selection)

For every variant (method x head x views): the same hyper-parameter search
(``protocol_tuning.select``: a learning-rate grid of >= 4 values spaced x2, widened
until the winner is inside, then the method's main parameter and weight decay), each
configuration trained at the reported budget on 80% of the training split and scored
by kNN on the other 20% (the test split is never loaded for it); then the winner is
trained on the whole training split with every seed and scored on the test split:
weighted kNN (k=20, T=0.07 and k=200, T=0.1), linear probe, effective rank of the
features, a kNN curve every ``eval_every`` epochs, and the seconds per training step
measured in the run itself (median over its iterations; the compute column).
Outputs under ``--out/DATASET/``: ``runs/*.json`` (one per training run),
``TABLE.json`` (summaries), ``TABLE.md`` and ``TABLE_curves.png``; ``claims.md``.

This module schedules a table's runs (search, seeds, ``--jobs`` workers, resuming) and is
the command line; the rows, budgets and run keys are in ``protocol_spec``, one training
run in ``protocol_training``, the search in ``protocol_tuning``, what is written in
``protocol_reports`` and the claims' verdicts in ``protocol_claims``; ``protocol_eval`` scores features.
``protocol_reports.generated_blocks()`` renders every published table (RESULTS.md, README.md) from the
committed JSON of the result folders (``protocol``, ``protocol_50_epochs``, ``protocol_cuda``,
``protocol_cuda_50_epochs``). Fashion-MNIST is read from ``$RANKSSL_FASHION_MNIST`` (default: where
Debian's ``dataset-fashion-mnist`` installs it).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
from concurrent.futures import Executor, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field, replace
from typing import Callable, Dict, List, Optional, Sequence, Tuple

BENCHMARKS = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, BENCHMARKS)

from protocol_reports import (format_probe, format_table, plan, plot_curves, write_claims,  # noqa: E402
                              write_step_costs)
from protocol_spec import (DATASETS, METHODS, SIZES, TABLES, DatasetSpec, RunSpec, Size, Variant,  # noqa: E402
                           planned_runs, recipe_digest, search_space, table_variants, training_variant,
                           variant_from_name)
from protocol_training import baseline_rows, train_run, tuning_split  # noqa: E402
from protocol_tuning import Selection, select  # noqa: E402

# ----------------------------------------------------------------------------- the protocol


def _figures(runs: Sequence[Dict]) -> Dict[str, List[float]]:
    """Each test figure of the final runs, one value per seed."""
    return {k: [r[k] for r in runs] for k in ("knn20", "knn200", "linear", "erank")}


class RunStore:
    """One JSON file per finished run, named by its key; a run whose file exists is never trained again."""

    def __init__(self, root: str) -> None:
        self.root = root
        os.makedirs(root, exist_ok=True)

    def path(self, key: str) -> str:
        return os.path.join(self.root, key + ".json")

    def get(self, key: str) -> Optional[Dict]:
        path = self.path(key)
        if not os.path.exists(path):
            return None
        with open(path) as handle:
            return json.load(handle)

    def put(self, key: str, result: Dict) -> None:
        tmp = self.path(key) + ".tmp"
        with open(tmp, "w") as handle:
            json.dump(result, handle, indent=1, default=str)
        os.replace(tmp, self.path(key))  # atomic: a kill never leaves half a result

    def cached(self, key: str, compute: Callable[[], Dict]) -> Dict:
        """The stored result of ``key``, or ``compute()`` stored and returned as a re-run will read it."""
        result = self.get(key)
        if result is None:
            self.put(key, compute())
            result = self.get(key)
        return result


@dataclass
class Progress:
    """Counts runs (planned is a lower bound: widening adds runs) and prints a line with an ETA."""

    planned: int
    done: int = 0
    trained: int = 0
    trained_seconds: float = 0.0
    log: Callable[[str], None] = field(default=lambda msg: print(msg, flush=True))
    jobs: int = 1  # runs trained side by side: the ETA divides by it

    def record(self, spec: RunSpec, seconds: Optional[float], score: float) -> None:
        self.done += 1
        self.planned = max(self.planned, self.done)
        if seconds is not None:
            self.trained += 1
            self.trained_seconds += seconds
        eta = "?"
        if self.trained:
            left = (self.planned - self.done) * self.trained_seconds / self.trained / self.jobs
            eta = str(datetime.timedelta(seconds=round(left)))
        how = "skipped (done before)" if seconds is None else f"{seconds:.0f} s"
        self.log(f"[{self.done}/>={self.planned}] {spec.variant} {spec.purpose} lr={spec.lr:g} "
                 f"param={spec.param} wd={spec.weight_decay:g} seed={spec.seed}: {100 * score:.1f} "
                 f"({how}); ETA >= {eta}")


def check_one_budget(out: str, epochs: int) -> None:
    """Refuse to mix budgets in one folder: a table written at another number of epochs would be overwritten,
    and the claims and costs read every table and run file of the folder as one budget."""
    for table in TABLES:
        path = os.path.join(out, f"{table}.json")
        if not os.path.exists(path):
            continue
        with open(path) as handle:
            written = json.load(handle).get("size", {}).get("epochs")
        if written is not None and written != epochs:
            raise ValueError(f"{path} holds a {written}-epoch table and this run is {epochs} epochs: give each "
                             f"budget its own --out folder (e.g. benchmarks/protocol_{epochs}_epochs)")


class NotFinished(Exception):
    """Raised in ``finished_only`` mode where a run would have to be trained."""


def _process_pool(workers: int) -> Executor:
    # spawn, not fork: a forked child of a process that has run torch can hang in OpenMP or CUDA.
    import multiprocessing

    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_prepare_worker)


def _prepare_worker() -> None:
    import multiprocessing

    import torch

    torch.set_flush_denormal(True)  # as main() does: subnormal floats slow CPU back-propagation ~10x
    # mmengine's Runner sets 'fork' in every process it starts in, and warns where it finds 'spawn'.
    multiprocessing.set_start_method("fork", force=True)


def _train_and_store(store_root: str, spec: RunSpec, dataset_name: str, data: Dict,
                     fit_val: Tuple[List[int], List[int]], work_root: str, trainer: Callable) -> float:
    """Train one run in a worker of ``--jobs`` and store it as the sequential path would; its seconds."""
    dataset = DATASETS[dataset_name]  # by name: a DatasetSpec holds lambdas, which do not pickle
    result = RunStore(store_root).cached(spec.run_id, lambda: trainer(spec, dataset, data, fit_val, work_root))
    return result["train_seconds"]


class Protocol:
    """Tunes and trains the variants of a table on one data set, resumably.

    With ``finished_only`` nothing is trained: a table is written from the runs already
    finished, and a row that would need one more run is listed as not run.
    """

    def __init__(self, dataset: DatasetSpec, size: Size, out: str, device: str = "cpu",
                 trainer: Callable = train_run, data: Optional[Dict] = None, finished_only: bool = False,
                 jobs: int = 1, executor: Callable[[int], Executor] = _process_pool) -> None:
        if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
            raise ValueError(f"jobs must be a whole number >= 1 (runs trained side by side), got {jobs!r}.")
        self.dataset, self.size, self.device, self.trainer = dataset, size, device, trainer
        self.finished_only = finished_only
        self.jobs, self.executor = jobs, executor
        self._trained_aside: Dict[str, float] = {}  # run id -> seconds, for runs a worker trained
        self.out = os.path.join(out, dataset.name)
        check_one_budget(self.out, size.epochs)
        self.store = RunStore(os.path.join(self.out, "runs"))
        self.work_root = os.path.join(self.out, "work_dirs")
        self.data = data if data is not None else dataset.load()
        train_y = self.data["train_y"]
        if size.train_subset:
            train_y = train_y[: size.train_subset]
        self.fit_val = tuning_split(train_y)
        self.progress = Progress(0, jobs=jobs)

    def _run(self, spec: RunSpec) -> Dict:
        result = self.store.get(spec.run_id)
        if result is None and self.finished_only:
            raise NotFinished(spec.variant)
        if result is None:
            result = self.store.cached(spec.run_id, lambda: self.trainer(spec, self.dataset, self._data_for(spec),
                                                                         self.fit_val, self.work_root))
            seconds = result["train_seconds"]
        else:
            seconds = self._trained_aside.pop(spec.run_id, None)
        self.progress.record(spec, seconds, result.get("val_knn20", result.get("knn20", float("nan"))))
        return result

    def _train_side_by_side(self, specs: Sequence[RunSpec]) -> None:
        """Train the runs of ``specs`` not stored yet in up to ``jobs`` worker processes.

        Nothing to do with one job, one missing run, or ``finished_only``: ``_run`` then
        trains (or refuses) them one by one. A run that fails in a worker raises here once
        the others have finished and been stored.
        """
        missing = [spec for spec in specs if self.store.get(spec.run_id) is None]
        if self.finished_only or self.jobs < 2 or len(missing) < 2:
            return
        workers = min(self.jobs, len(missing))
        self.progress.log(f"training {len(missing)} runs side by side in {workers} processes: "
                          + "; ".join(f"{s.variant} {s.purpose} lr={s.lr:g} param={s.param} wd={s.weight_decay:g} "
                                      f"seed={s.seed}" for s in missing))
        with self.executor(workers) as pool:
            futures = {spec.run_id: pool.submit(_train_and_store, self.store.root, spec, self.dataset.name,
                                                self._data_for(spec), self.fit_val, self.work_root, self.trainer)
                       for spec in missing}
            for run_id, future in futures.items():
                try:
                    self._trained_aside[run_id] = future.result()
                except BrokenProcessPool as error:
                    raise RuntimeError(self._worker_died(missing, workers)) from error

    def _worker_died(self, missing: Sequence[RunSpec], workers: int) -> str:
        """What to say when a worker process was killed (the pool then stops every other worker too)."""
        stored = sum(self.store.get(spec.run_id) is not None for spec in missing)
        return (f"a --jobs worker process died mid-run (killed by the operating system, most often for memory: "
                f"each of the {workers} workers holds a whole run). {stored} of this round's {len(missing)} runs "
                f"were stored and a re-run resumes from them; re-run with fewer --jobs or on a quieter machine.")

    def _data_for(self, spec: RunSpec) -> Dict:
        """Tuning runs get the training split only: selection cannot see the test split."""
        if spec.purpose == "tune":
            return {"train_x": self.data["train_x"], "train_y": self.data["train_y"]}
        return self.data

    def _spec(self, variant: Variant, config: Dict, seed: int, purpose: str) -> RunSpec:
        space = METHODS[variant.method].space
        return RunSpec(self.dataset.name, variant.name, config["lr"], config[space.param_name],
                       config["weight_decay"], self.size.epochs, seed, purpose, self.size.train_subset,
                       self.size.eval_every, self.device, recipe_digest(variant.method, self.dataset))

    def tune(self, variant: Variant) -> Selection:
        method = METHODS[variant.method]
        return select(search_space(method, self.size),
                      lambda config: self._run(self._spec(variant, config, 0, "tune"))["val_knn20"],
                      max_widen=self.size.max_widen,
                      prefetch=lambda configs: self._train_side_by_side(
                          [self._spec(variant, config, 0, "tune") for config in configs]))

    def _final_runs(self, trained: Variant, config: Dict) -> List[Dict]:
        """The configuration trained on the whole training split with each of the size's seeds, test-scored."""
        specs = [self._spec(trained, config, seed, "final") for seed in self.size.seeds]
        self._train_side_by_side(specs)
        return [self._run(spec) for spec in specs]

    def probe(self, variant_name: str, lr: float, param=None, weight_decay: Optional[float] = None,
              final: bool = False) -> Dict:
        """Score one configuration the search did not reach, exactly as a tuning run (validation kNN, seed 0).

        ``param`` and ``weight_decay`` default to the method's defaults, the context of the
        search's first learning-rate grid. The run is stored like the search's own, so a later
        search that reaches this configuration reuses it; nothing about the selection changes.
        With ``final``, the configuration is also trained with the size's seeds on the whole
        training split and scored on the test split, as a table's row would be.
        Returns ``{"variant", "config", "val_knn20", "selection", "test"}``: ``selection`` is the
        search's winner and its validation score when the search has finished, else None;
        ``test`` maps each figure (knn20, knn200, linear, erank) to its per-seed values, or is None.
        """
        variant = variant_from_name(variant_name).resolved()
        if not lr > 0:
            raise ValueError(f"probe: lr must be positive, got {lr!r}.")
        if weight_decay is not None and not weight_decay >= 0:
            raise ValueError(f"probe: weight_decay must be >= 0, got {weight_decay!r}.")
        space = METHODS[variant.method].space
        if param is None:
            param = space.default_param
        elif not param > 0:  # temperature, steepness and bins are all positive
            raise ValueError(f"probe: {space.param_name} must be positive, got {param!r}.")
        elif isinstance(space.default_param, int):
            if float(param) != int(param):
                raise ValueError(f"probe: {space.param_name} takes whole numbers, got {param!r}.")
            param = int(param)
        config = {"lr": lr, space.param_name: param,
                  "weight_decay": space.default_weight_decay if weight_decay is None else weight_decay}
        trained = training_variant(variant)
        score = self._run(self._spec(trained, config, 0, "tune"))["val_knn20"]
        test = None
        if final:
            test = _figures(self._final_runs(trained, config))
        finished_only, progress = self.finished_only, self.progress
        self.finished_only, self.progress = True, Progress(0, log=lambda msg: None)  # replay the search quietly
        try:
            chosen = self.tune(trained)
            selection = {"lr": chosen.lr, space.param_name: chosen.param, "weight_decay": chosen.weight_decay,
                         "val_knn20": chosen.score}
        except NotFinished:
            selection = None
        finally:
            self.finished_only, self.progress = finished_only, progress
        return {"variant": variant.name, "config": config, "val_knn20": score, "selection": selection,
                "test": test}

    def variant_summary(self, variant: Variant) -> Dict:
        variant = variant.resolved()
        trained = training_variant(variant)
        chosen = self.tune(trained)
        config = {"lr": chosen.lr, METHODS[variant.method].space.param_name: chosen.param,
                  "weight_decay": chosen.weight_decay}
        runs = self._final_runs(trained, config)
        return {
            "variant": variant.name, "runs_of": trained.name, "method": variant.method, "head": variant.head,
            "views": variant.views,
            "uses_labels": METHODS[variant.method].uses_labels,
            "selection": {"lr": chosen.lr, "param_name": METHODS[variant.method].space.param_name,
                          "param": chosen.param, "weight_decay": chosen.weight_decay, "val_knn20": chosen.score,
                          "lr_grid": chosen.lr_grid, "lr_position": chosen.lr_position,
                          "param_position": chosen.param_position,
                          "weight_decay_position": chosen.weight_decay_position,
                          "weight_decay_grid": chosen.weight_decay_grid,
                          "param_grid": chosen.param_grid,
                          "edges": chosen.edges, "trials": chosen.trials},
            **_figures(runs),
            "curves": [r["curve"] for r in runs],
            "s_per_step": statistics.median(r["s_per_step"] for r in runs),
            "train_seconds": statistics.mean(r["train_seconds"] for r in runs),
            "seeds": list(self.size.seeds), "epochs": self.size.epochs,
        }

    def table(self, name: str, methods: Optional[Sequence[str]] = None,
              views: Optional[Sequence[str]] = None) -> Dict:
        variants = table_variants(name, methods, views)
        self.progress = Progress(planned_runs(variants, self.size), jobs=self.jobs)
        summaries, not_run = {}, []
        for variant in variants:
            try:
                summaries[variant.resolved().name] = self.variant_summary(variant)
            except NotFinished:
                not_run.append(variant.resolved().name)
        baselines = self.baselines() if name == "main" else {}
        report = {"table": name, "dataset": self.dataset.name, "size": asdict(self.size), "device": self.device,
                  "date": str(datetime.date.today()), "variants": summaries, "baselines": baselines,
                  "not_run": not_run}
        with open(os.path.join(self.out, f"{name}.json"), "w") as handle:
            json.dump(report, handle, indent=1, default=str)
        with open(os.path.join(self.out, f"{name}.md"), "w") as handle:
            handle.write(format_table(report))
        plot_curves(summaries, os.path.join(self.out, f"{name}_curves.png"), self.dataset.name)
        return report

    def baselines(self) -> Dict[str, Dict[str, float]]:
        # A table written from finished runs trains nothing, so it must not need the runs'
        # accelerator (a --device cuda table is written on the CPU host the runs came back to);
        # the raw-pixel and random-network rows are cheap there.
        device = "cpu" if self.finished_only else self.device
        return baseline_rows(self.data, self.size.seeds, device, self.dataset.normalize)


def measure_cost(protocol: "Protocol", table: str, methods: Optional[Sequence[str]], epochs: int = 2,
                 views: Optional[Sequence[str]] = None) -> None:
    """Train each variant of ``table`` once for ``epochs`` on the whole training split (recipe defaults, seed 0),
    so that ``plan`` can extrapolate its cost from the seconds per step measured there."""
    variants = [training_variant(v) for v in table_variants(table, methods, views)]
    protocol.progress = Progress(len(variants))
    for variant in variants:
        space = METHODS[variant.method].space
        protocol._run(RunSpec(protocol.dataset.name, variant.name, space.base_lr, space.default_param,
                              space.default_weight_decay, epochs, 0, "cost", None, epochs, protocol.device,
                              recipe_digest(variant.method, protocol.dataset)))


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--table", choices=[*TABLES, "claims", "costs"], help="required unless --probe")
    parser.add_argument("--dataset", default="digits", choices=list(DATASETS))
    parser.add_argument("--size", default="default", choices=list(SIZES))
    parser.add_argument("--methods", nargs="+", choices=list(METHODS), help="only these methods' rows")
    parser.add_argument("--views", nargs="+", metavar="VIEWS",
                        help="only the rows with these views, as in a row's name (16, 2+4): a table's rows can "
                             "then train in parallel processes")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--jobs", type=int, default=1,
                        help="train up to this many runs side by side (the learning rates of one grid, the seeds "
                             "of a row) in worker processes; the selection is the same as with 1. Each worker "
                             "holds a whole run's memory (S2R2 at 16 views: about 6 GB); a worker killed for "
                             "memory stops the round with an error saying so, and a re-run resumes from the runs "
                             "it stored")
    parser.add_argument("--plan", action="store_true", help="print the runs and cost estimate, train nothing")
    parser.add_argument("--measure", action="store_true",
                        help="with --plan: first train each variant 2 epochs to measure its s/step")
    parser.add_argument("--seeds", nargs="+", type=int,
                        help="the final runs' seeds, in this order (default: the size's); two processes "
                             "given the seeds in opposite orders share a table's final runs")
    parser.add_argument("--finished-only", action="store_true",
                        help="train nothing: write the table from finished runs, listing the rows not run")
    parser.add_argument("--out", default=os.path.join(BENCHMARKS, "protocol"))
    parser.add_argument("--probe", metavar="METHOD/HEAD/VIEWS",
                        help="score one configuration the search did not reach (a tuning run on the validation "
                             "part) and print it beside the search's winner; with --lr [--param] [--weight-decay]")
    parser.add_argument("--lr", type=float, help="with --probe: the learning rate")
    parser.add_argument("--param", type=float, help="with --probe: the method's main parameter (default: its default)")
    parser.add_argument("--weight-decay", type=float, help="with --probe: the weight decay (default: the default)")
    parser.add_argument("--final", action="store_true",
                        help="with --probe: also train the seeds' final runs and score the test split")
    args = parser.parse_args(argv)
    if args.probe is not None and args.lr is None:
        parser.error("--probe needs --lr")
    if args.table is None and args.probe is None:
        parser.error("the following arguments are required: --table (or --probe)")
    if args.probe is not None and args.plan:
        parser.error("--probe trains one configuration; --plan is for a --table")
    if args.jobs < 1:
        parser.error(f"--jobs must be >= 1, got {args.jobs}")
    if args.views is not None and args.table not in TABLES:
        parser.error("--views picks rows of a training table (not --probe, claims or costs)")
    if args.table in TABLES:
        try:
            table_variants(args.table, args.methods, args.views)
        except ValueError as error:
            parser.error(str(error))
    if args.table == "claims":
        print(write_claims(args.out, args.dataset))
        return
    if args.table == "costs":
        print(write_step_costs(args.out, args.dataset))
        return
    size = SIZES[args.size] if not args.seeds else replace(SIZES[args.size], seeds=tuple(args.seeds))
    if args.plan and not args.measure:
        print(plan(args.table, size, args.methods, args.out, args.dataset, args.views))
        return
    if args.device == "cpu":  # mmengine's Runner would otherwise train on a visible GPU
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    import torch

    # As rankssl.mm does for training: subnormal floats slow CPU back-propagation ~10x.
    torch.set_flush_denormal(True)
    protocol = Protocol(DATASETS[args.dataset], size, args.out, args.device, finished_only=args.finished_only,
                        jobs=args.jobs)
    if args.plan:
        measure_cost(protocol, args.table, args.methods, views=args.views)
        print(plan(args.table, size, args.methods, args.out, args.dataset, args.views))
        return
    if args.probe is not None:
        print(format_probe(protocol.probe(args.probe, args.lr, args.param, args.weight_decay, args.final)))
        return
    report = protocol.table(args.table, args.methods, args.views)
    print(format_table(report))
    print(f"trained {protocol.progress.trained} runs, skipped {protocol.progress.done - protocol.progress.trained} "
          f"finished before; results in {protocol.out}")


if __name__ == "__main__":
    main()
