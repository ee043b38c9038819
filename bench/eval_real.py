"""Every self-labelling method at its defaults on real data sets, beside k-means.

    python bench/eval_real.py                         # all data sets, all methods, seeds 0-4
    python bench/eval_real.py --datasets wine iris --methods dino --seeds 0 1
    python bench/eval_real.py --json results.json     # also write every run's figures
    python bench/eval_real.py --summary a.json b.json # the summary of runs done in parts

What a new user would do: standardised features (``ssl.train`` standardises with the clean
data's statistics; k-means gets the same standardised features), ``n_prototypes`` = the number
of classes, ``epochs=30``, every other option at its default. Per run it prints NMI and ARI of
the self-labels against the true classes, the same for k-means (10 restarts, random_state =
seed) on the standardised features, the summed feedback work sum W of the demon's ledger
(negative: the demon extracted work), the largest absolute residual of the ledger's identities
(first law, D1, G1, G2, G4, E2) and the number of warnings training raised (e.g. SeLa's
Sinkhorn stopping at max_iter). Then a summary table per data set and method: median NMI, median
k-means NMI, their ratio, the runs with sum W >= 0 and the warnings, and whether the targets of
issue 15 are met (median NMI >= 0.9x k-means, sum W < 0 in every run, no warning).

Data sets (all real, all loaded offline from files that ship inside the packages):
- digits, iris, wine, breast_cancer: scikit-learn's bundled copies;
- penguins: the Palmer penguins (palmerpenguins; 333 complete rows, 4 body measurements,
  3 species), read from the CSV inside the package;
- cars: the classic auto-mpg cars (vega_datasets; 392 complete rows, 6 measurements and the
  model year, 3 regions of origin), read from the JSON inside the package.
The last two need ``pip install "thermossl[eval]"``.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import sys
import time
import warnings

import numpy as np

from thermossl import ssl

RESIDUALS = ("res_first_law", "res_D1", "res_G1", "res_G2", "res_G4", "res_E2")


def _package_file(package: str, *parts: str) -> str:
    import importlib.resources

    try:
        root = importlib.resources.files(package)
    except ModuleNotFoundError:
        raise SystemExit(f'the {package} data set needs the package {package}: pip install "thermossl[eval]"') from None
    return root.joinpath(*parts).read_text(encoding="utf-8")


def load_penguins():
    """Palmer penguins: bill length, bill depth, flipper length, body mass; the species."""
    rows = list(csv.DictReader(io.StringIO(_package_file("palmerpenguins", "data", "penguins.csv"))))
    columns = ("bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g")
    rows = [r for r in rows if all(r[c] not in ("NA", "") for c in columns) and r["sex"] not in ("NA", "")]
    X = np.array([[float(r[c]) for c in columns] for r in rows])
    _, y = np.unique([r["species"] for r in rows], return_inverse=True)
    return X, y


def load_cars():
    """Auto-mpg cars: mpg, cylinders, displacement, horsepower, weight, acceleration, model year;
    the region of origin (USA, Europe, Japan)."""
    records = json.loads(_package_file("vega_datasets", "_data", "cars.json"))
    columns = ("Miles_per_Gallon", "Cylinders", "Displacement", "Horsepower", "Weight_in_lbs", "Acceleration")
    records = [r for r in records if all(r[c] is not None for c in columns)]
    X = np.array([[float(r[c]) for c in columns] + [float(r["Year"][:4])] for r in records])
    _, y = np.unique([r["Origin"] for r in records], return_inverse=True)
    return X, y


def _sklearn_loader(name):
    def load():
        import sklearn.datasets

        data = getattr(sklearn.datasets, f"load_{name}")()
        return data.data.astype(np.float64), data.target.astype(np.int64)

    return load


DATASETS = {
    "digits": _sklearn_loader("digits"),
    "iris": _sklearn_loader("iris"),
    "wine": _sklearn_loader("wine"),
    "breast_cancer": _sklearn_loader("breast_cancer"),
    "penguins": load_penguins,
    "cars": load_cars,
}


def standardised(X):
    scale = X.std(axis=0)
    return (X - X.mean(axis=0)) / np.where(scale > 0, scale, 1.0)


def _parse_option(text: str):
    key, _, value = text.partition("=")
    for cast in (int, float):
        try:
            return key, cast(value)
        except ValueError:
            pass
    return key, {"None": None, "True": True, "False": False}.get(value, value)


def run_one(X, y, method, seed, epochs, options):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        start = time.perf_counter()
        result = ssl.train(X, method=method, n_prototypes=int(np.unique(y).size), epochs=epochs, seed=seed, **options)
        seconds = time.perf_counter() - start
    scores = ssl.cluster_scores(result.labels, y)
    ledger = result.ledger
    residual = max(float(np.max(np.abs(ledger.column(f)))) for f in RESIDUALS)
    return {
        "nmi": scores["nmi"],
        "ari": scores["ari"],
        "sum_W": ledger.totals()["W"],
        "max_residual": residual,
        "charge_err_last": float(ledger.column("charge_err")[-1]),
        "clusters_used": int(np.unique(result.labels).size),
        "warnings": [str(w.message) for w in caught],
        "cycles": len(ledger),
        "seconds": seconds,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--methods", nargs="+", default=list(ssl.METHODS), choices=list(ssl.METHODS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--option", nargs="*", default=[], help="training overrides key=value (not the defaults)")
    parser.add_argument("--json", help="write every run's figures to this file")
    parser.add_argument("--summary", nargs="+", metavar="JSON",
                        help="no training: the summary table of runs saved by --json (parts of one evaluation)")
    args = parser.parse_args(argv)
    options = dict(_parse_option(o) for o in args.option)
    if args.summary:
        runs = []
        for path in args.summary:
            with open(path) as handle:
                runs.extend(json.load(handle)["runs"])
        datasets = [d for d in DATASETS if any(r["dataset"] == d for r in runs)]
        methods = [m for m in ssl.METHODS if any(r["method"] == m for r in runs)]
        print_summary(runs, datasets, methods)
        return 0

    runs = []
    print(f"{'data set':<14}{'method':<7}{'seed':>5}{'NMI':>8}{'ARI':>8}{'km NMI':>8}{'km ARI':>8}"
          f"{'sum W':>11}{'max |res|':>11}{'warn':>6}{'s':>7}")
    for name in args.datasets:
        X, y = DATASETS[name]()
        k = int(np.unique(y).size)
        kmeans = {}
        for seed in args.seeds:
            from sklearn.cluster import KMeans

            labels = KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(standardised(X))
            kmeans[seed] = ssl.cluster_scores(labels, y)
        for method in args.methods:
            for seed in args.seeds:
                r = run_one(X, y, method, seed, args.epochs, options)
                r.update(dataset=name, method=method, seed=seed, n=X.shape[0], k=k,
                         kmeans_nmi=kmeans[seed]["nmi"], kmeans_ari=kmeans[seed]["ari"])
                runs.append(r)
                print(f"{name:<14}{method:<7}{seed:>5}{r['nmi']:>8.3f}{r['ari']:>8.3f}{r['kmeans_nmi']:>8.3f}"
                      f"{r['kmeans_ari']:>8.3f}{r['sum_W']:>11.4f}{r['max_residual']:>11.1e}{len(r['warnings']):>6}"
                      f"{r['seconds']:>7.1f}", flush=True)
                for message in r["warnings"]:
                    print(f"    warning: {message}")

    print_summary(runs, args.datasets, args.methods)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"options": options, "epochs": args.epochs, "runs": runs}, handle, indent=1)
    return 0


def print_summary(runs, datasets, methods):
    print()
    print("| data set | N | K | method | median NMI | median k-means NMI | ratio | median ARI | max |residual| "
          "| runs with sum W >= 0 | warnings | targets |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    missed = []
    for name in datasets:
        for method in methods:
            sel = [r for r in runs if r["dataset"] == name and r["method"] == method]
            nmi = float(np.median([r["nmi"] for r in sel]))
            km = float(np.median([r["kmeans_nmi"] for r in sel]))
            ari = float(np.median([r["ari"] for r in sel]))
            ratio = nmi / km if km > 0 else float("inf")
            positive_w = sum(r["sum_W"] >= 0 for r in sel)
            n_warn = sum(len(r["warnings"]) for r in sel)
            residual = max(r["max_residual"] for r in sel)
            ok = ratio >= 0.9 and positive_w == 0 and n_warn == 0
            if not ok:
                missed.append(f"{name}/{method}")
            print(f"| {name} | {sel[0]['n']} | {sel[0]['k']} | {method} | {nmi:.3f} | {km:.3f} | {ratio:.2f} | {ari:.3f} "
                  f"| {residual:.1e} | {positive_w}/{len(sel)} | {n_warn} | {'met' if ok else 'MISSED'} |")
    print()
    print("targets missed: " + (", ".join(missed) if missed else "none"))


if __name__ == "__main__":
    sys.exit(main())
