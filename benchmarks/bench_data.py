"""Streaming input pipeline (issue 15): peak memory of a training run vs dataset size, decode throughput against a
minimal hand-written DataLoader + Pillow baseline, and the images each of two gloo DDP ranks decodes.

    python benchmarks/bench_data.py                       # 100k JPEGs of 64x64 in a temp folder (made once)
    python benchmarks/bench_data.py --images 20000 --sizes 2000 20000 --skip-ddp

1. A folder of ``--images`` JPEGs (64x64, 100 classes) is generated under ``--folder`` (default: a temp dir; not
   committed; reused when it exists).
2. Memory: for each of ``--sizes`` a child process trains a tiny CNN for 2 epochs on that many images in stream
   mode (``data.limit``; random-resized crop to 32 + flip, 2 workers, batch 256). The parent samples the PSS
   (proportional set size: shared pages split between the processes that share them) of the child and its
   DataLoader workers every 0.2 s and keeps the peak; the child's own peak RSS (VmHWM) is recorded too.
3. Throughput: images/s over one epoch of ``--throughput-images`` images with 2 workers, batch 256, for (a) a
   minimal hand-written ``Dataset`` (Pillow open + convert + ``torch.from_numpy``) in a ``DataLoader``, normalised
   on the main process, (b) nasforge's stream loader with the same work (``image_size`` 64: decode, no crop), and
   (c) nasforge with random-resized crop + flip. Runs alternate, ``--repeats`` each; the median is reported.
4. DDP: ``torchrun --nproc_per_node 2`` (gloo) trains a tiny BigNAS supernet for 1 epoch on 2,000 streamed images;
   each rank counts the images it decoded.
5. Loss curves: a small CNN on 4,000 embedded Fashion-MNIST images, fp32 vs bf16 vs batch 32 x accumulate 2
   (``--curves-only [RESULTS.json]`` runs just this part and adds it to the results file).

Results: ``benchmarks/results/bench_data.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


# ------------------------------------------------------------------------------------------------ data
def make_folder(root: Path, n: int, classes: int = 100, seed: int = 0) -> Path:
    """``root/train/c<k>/<i>.jpg``: ``n`` 64x64 JPEGs of smooth random colour fields (quality 90)."""
    from PIL import Image

    marker = root / f".complete-{n}"
    if marker.exists():
        return root
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:64, 0:64].astype(np.float32) / 64.0
    t0 = time.time()
    for i in range(n):
        c = i % classes
        d = root / "train" / f"c{c:03d}"
        if i < classes:
            d.mkdir(parents=True, exist_ok=True)
        a, b, ph = rng.uniform(1, 6, 3), rng.uniform(1, 6, 3), rng.uniform(0, 6.3, 3)
        img = 127.5 + 127.5 * np.sin(a * xx[..., None] * 3 + b * yy[..., None] * 3 + ph)
        Image.fromarray(img.astype(np.uint8)).save(d / f"{i:06d}.jpg", quality=90)
        if i and i % 20000 == 0:
            print(f"  generated {i} images ({time.time() - t0:.0f} s)", flush=True)
    marker.write_text(str(n))
    return root


# ------------------------------------------------------------------------------------------------ memory
def _pss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _tree(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(_children(p))
    return out


def child_train(folder: str, n: int, epochs: int, workers: int) -> None:
    """Runs in the measured child process: a 2-epoch stream-mode training run; prints one JSON line."""
    import torch
    from torch import nn

    from nasforge.data import DataConfig, load_data
    from nasforge.train import TrainConfig, train

    torch.set_num_threads(1)
    t0 = time.time()
    splits = load_data(DataConfig(source=folder, mode="stream", limit=n, resolution=32, random_resized_crop=True,
                                  flip=True, val_fraction=0.0, test_fraction=0.0, num_workers=workers))
    loader = splits.loader("train", 256, seed=0, drop_last=True)
    g = torch.Generator().manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(8, splits.num_classes))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    res = train(model, loader, config=TrainConfig(lr=0.05, batch_size=256), epochs=epochs, progress=False)
    status = Path("/proc/self/status").read_text()
    hwm = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:"))
    print(json.dumps({"images": len(splits.train), "steps": res.steps, "seconds": round(time.time() - t0, 2),
                      "main_peak_rss_mb": round(hwm / 1024, 1), "decoded": loader.decoded,
                      "final_loss": res.history[-1].train_loss}), flush=True)


def measure_memory(folder: Path, n: int, epochs: int, workers: int) -> dict:
    cmd = [sys.executable, __file__, "--child-train", str(folder), str(n), str(epochs), str(workers)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    peak, peak_procs, stop = 0, 0, threading.Event()

    def sample() -> None:
        nonlocal peak, peak_procs
        while not stop.is_set():
            tree = _tree(proc.pid)
            total = sum(_pss_kb(p) for p in tree)
            if total > peak:
                peak, peak_procs = total, len(tree)
            time.sleep(0.2)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    out, err = proc.communicate()
    stop.set()
    th.join()
    if proc.returncode != 0:
        raise RuntimeError(err[-2000:])
    row = json.loads(out.strip().splitlines()[-1])
    row.update(peak_pss_mb_all_processes=round(peak / 1024, 1), processes_at_peak=peak_procs)
    return row


# ------------------------------------------------------------------------------------------------ throughput
def throughput(folder: Path, n: int, workers: int, repeats: int) -> dict:
    import torch
    from PIL import Image

    from nasforge.data import DataConfig, load_data

    torch.set_num_threads(1)
    plain = load_data(DataConfig(source=str(folder), mode="stream", limit=n, image_size=64, val_fraction=0.0,
                                 test_fraction=0.0, num_workers=workers))
    rrc = load_data(DataConfig(source=str(folder), mode="stream", limit=n, resolution=64, random_resized_crop=True,
                               flip=True, val_fraction=0.0, test_fraction=0.0, num_workers=workers))
    files = [plain.train.path(i) for i in range(len(plain.train))]
    labels = plain.train.labels.tolist()
    mean = torch.tensor(plain.mean).view(1, 3, 1, 1)
    std = torch.tensor(plain.std).view(1, 3, 1, 1)

    class Minimal(torch.utils.data.Dataset):  # the hand-written baseline
        def __len__(self) -> int:
            return len(files)

        def __getitem__(self, i: int):
            with Image.open(files[i]) as im:
                a = np.asarray(im.convert("RGB"), dtype=np.uint8)
            return torch.from_numpy(a.copy()).permute(2, 0, 1), labels[i]

    def run_baseline() -> float:
        dl = torch.utils.data.DataLoader(Minimal(), batch_size=256, shuffle=True, num_workers=workers,
                                         generator=torch.Generator().manual_seed(0))
        t0, seen = time.perf_counter(), 0
        for x, y in dl:
            x = (x.float() / 255.0 - mean) / std
            seen += len(y)
        return seen / (time.perf_counter() - t0)

    def run_ours(splits) -> float:
        loader = splits.loader("train", 256, seed=0)
        t0, seen = time.perf_counter(), 0
        for x, y in loader:
            seen += len(y)
        return seen / (time.perf_counter() - t0)

    runs: dict[str, list[float]] = {"baseline": [], "nasforge": [], "nasforge_rrc_flip": []}
    for _ in range(repeats):
        runs["baseline"].append(run_baseline())
        runs["nasforge"].append(run_ours(plain))
        runs["nasforge_rrc_flip"].append(run_ours(rrc))
    med = {k: statistics.median(v) for k, v in runs.items()}
    return {"images": n, "workers": workers, "batch_size": 256,
            "images_per_s": {k: [round(v, 1) for v in vs] for k, vs in runs.items()},
            "median_images_per_s": {k: round(v, 1) for k, v in med.items()},
            "ratio_nasforge_to_baseline": round(med["nasforge"] / med["baseline"], 3),
            "ratio_rrc_to_baseline": round(med["nasforge_rrc_flip"] / med["baseline"], 3)}


# ------------------------------------------------------------------------------------------------ ddp
DDP_WORKER = '''
import json, sys, torch
from nasforge.data import DataConfig, load_data, FileDataset
from nasforge.spaces.bignas import BigNASSpace, BigNASStage
from nasforge.supernet.distributed import init_distributed, shutdown_distributed, barrier
from nasforge.supernet.mbconv import ElasticMBConvSupernet
from nasforge.supernet.train import StepRecipe, SupernetTrainer
from nasforge.train import TrainConfig
torch.set_num_threads(1)
folder, out = sys.argv[1], sys.argv[2]
ctx = init_distributed("gloo", "cpu")
decoded = []
real = FileDataset.decode
def counting(self, i, min_side=None):
    decoded.append(self.files[i].decode())
    return real(self, i, min_side)
FileDataset.decode = counting
splits = load_data(DataConfig(source=folder, mode="stream", limit=2000, resolution=16, random_resized_crop=True,
                              flip=True, val_fraction=0.0, test_fraction=0.0, num_workers=0, mean=(0.5,) * 3,
                              std=(0.25,) * 3))
space = BigNASSpace(stages=(BigNASStage((8,), (1,), (3,), (1,), 1),), resolutions=(12, 16), stem_widths=(8,),
                    head_widths=(16,))
net = ElasticMBConvSupernet(space, (3, 16, 16), splits.num_classes, generator=torch.Generator().manual_seed(0))
t = SupernetTrainer(net, space, splits, recipe=StepRecipe.bignas(), train_config=TrainConfig.from_recipe(
    "bignas", batch_size=64), epochs=1, dist=ctx, calib_batches=1, eval_batches=1, eval_batch_size=64,
    eval_split="train")
decoded.clear()
at_epoch_end, real_end = [], t._epoch_end
def epoch_end(epoch, seconds):  # count the training epoch only (rank 0 then decodes calibration batches)
    at_epoch_end.append(list(decoded))
    real_end(epoch, seconds)
t._epoch_end = epoch_end
res = t.fit()
seen = at_epoch_end[0]
json.dump({"rank": ctx.rank, "steps": res.steps, "decoded": len(seen), "unique": sorted(set(seen))},
          open(f"{out}/rank{ctx.rank}.json", "w"))
barrier(ctx)
shutdown_distributed(ctx)
'''


def ddp_count(folder: Path) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "worker.py"
        script.write_text(DDP_WORKER)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2",
               "--master_addr", "127.0.0.1", "--master_port", str(port), str(script), str(folder), tmp]
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "src")}
        t0 = time.time()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
        if proc.returncode != 0:
            raise RuntimeError(proc.stderr[-3000:])
        ranks = [json.loads((Path(tmp) / f"rank{r}.json").read_text()) for r in (0, 1)]
    a, b = (set(r["unique"]) for r in ranks)
    return {"images": 2000, "global_batch": 64, "seconds": round(time.time() - t0, 1),
            "steps": [r["steps"] for r in ranks], "decoded_per_rank": [r["decoded"] for r in ranks],
            "overlap": len(a & b), "union": len(a | b)}


# ------------------------------------------------------------------------------------------------ loss curves
def loss_curves(epochs: int = 4) -> dict:
    """Per-epoch training loss / validation accuracy of one small CNN on 4,000 embedded Fashion-MNIST images:
    fp32 at batch 64, bf16 autocast at batch 64, and batch 32 x accumulate_steps 2 (the same step batch and
    learning rate), all from the same initial weights and the same image order (the flips differ between batch
    sizes)."""
    import torch
    from torch import nn

    from nasforge.data import load_data
    from nasforge.train import TrainConfig, train

    torch.set_num_threads(1)
    splits = load_data({"source": "embedded", "limit": 4000, "val_fraction": 0.2, "test_fraction": 0.0,
                        "flip": True})

    def net() -> nn.Module:
        g = torch.Generator().manual_seed(0)
        m = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(16, 32, 3, padding=1),
                          nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))
        with torch.no_grad():
            for p in m.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * (2.0 / max(p[0].numel(), 1)) ** 0.5 if p.ndim > 1
                        else torch.zeros(p.shape))
        return m

    runs = {"fp32 batch 64": dict(batch_size=64), "bf16 batch 64": dict(batch_size=64, precision="bf16"),
            "fp32 batch 32 x accumulate 2": dict(batch_size=32, accumulate_steps=2)}
    out = {}
    for name, cfg in runs.items():
        config = TrainConfig(optimizer="sgd", lr=0.1, lr_reference_batch=64, momentum=0.9, nesterov=True,
                             weight_decay=5e-4, schedule="cosine", **cfg)
        t0 = time.time()
        res = train(net(), splits.loader("train", cfg["batch_size"], seed=0), config=config, epochs=epochs,
                    val_batches=splits.loader("val", 256), progress=False)
        out[name] = {"train_loss": [round(h.train_loss, 4) for h in res.history],
                     "val_accuracy": [round(h.val_accuracy, 2) for h in res.history],
                     "seconds": round(time.time() - t0, 1)}
        print(name, json.dumps(out[name]), flush=True)
    return out


# ------------------------------------------------------------------------------------------------ main
def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child-train":
        child_train(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "--curves-only":  # add the loss curves to an existing results file
        sys.path.insert(0, str(REPO / "src"))
        out = Path(sys.argv[2]) if len(sys.argv) > 2 else HERE / "results" / "bench_data.json"
        result = json.loads(out.read_text()) if out.exists() else {}
        result["loss_curves"] = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                                 "load_average": os.getloadavg(), "runs": loss_curves()}
        out.write_text(json.dumps(result, indent=1) + "\n")
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=100_000)
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--throughput-images", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--folder", type=Path, default=Path(tempfile.gettempdir()) / "nasforge-bench-data")
    ap.add_argument("--skip-ddp", action="store_true")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "bench_data.json")
    args = ap.parse_args()
    sys.path.insert(0, str(REPO / "src"))
    t0 = time.time()
    folder = make_folder(args.folder, args.images)
    result: dict = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": {
        "cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
        "load_average_start": os.getloadavg()}, "folder_images": args.images,
        "generate_seconds": round(time.time() - t0, 1)}
    try:
        result["commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                                          text=True).stdout.strip()
    except OSError:
        pass
    print(json.dumps(result), flush=True)
    result["memory"] = []
    for n in args.sizes:
        row = measure_memory(folder, n, args.epochs, args.workers)
        print(json.dumps(row), flush=True)
        result["memory"].append(row)
    result["throughput"] = throughput(folder, min(args.throughput_images, args.images), args.workers, args.repeats)
    print(json.dumps(result["throughput"]), flush=True)
    if not args.skip_ddp:
        result["ddp"] = ddp_count(folder)
        print(json.dumps(result["ddp"]), flush=True)
    result["loss_curves"] = {"runs": loss_curves()}
    result["machine"]["load_average_end"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
