"""Translation benchmark: model-only images/s and end-to-end photos/s, next to a CycleGAN ResNet-9 generator.

Model-only: a TwinGAN translator with the original architecture (max_channels
256, fmap_base 1024; untrained weights, which cost the same as trained ones)
translates random batches human -> anime, and the standard CycleGAN ResNet-9
generator (written here from the paper's description, for this comparison
only) maps the same batches. Each variant runs ``--warmup`` batches, then
batches until ``--min-time`` seconds have passed (at least ``--min-iters``).
On a GPU three variants are timed: fp32, bf16 autocast + channels_last, and
the bf16 variant under torch.compile.

End to end: ``--photos`` astronaut-sized (512 x 512) JPEG photos of one face
(skimage's astronaut, shifted and mirrored so they differ) go through
`twingan translate`'s own code path: decode, MTCNN detection, 5-point
alignment, translation, writing the avatar PNG. Photos per batch follow the
model batch sizes.

    python scripts/bench_translate.py --resolutions 128 256 --batch-sizes 1 16
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image
from torch import nn

from twingan.faces import FaceDetector
from twingan.inference import Translator
from twingan.inference.faces_pipeline import FacePipeline
from twingan.inference.files import InputFile, OutputOptions, collect_inputs, translate_files
from twingan.models import ModelConfig, TwinGAN


class ResnetBlock(nn.Module):
    """CycleGAN residual block: reflection pad, 3x3 conv, instance norm, ReLU, twice; identity shortcut."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3), nn.InstanceNorm2d(channels), nn.ReLU(True),
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3), nn.InstanceNorm2d(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResnetGenerator9(nn.Sequential):
    """CycleGAN's generator (Zhu et al. 2017, appendix; Johnson et al. 2016): c7s1-64, d128, d256,
    R256 x 9, u128, u64, c7s1-3, with reflection padding, instance norm and a tanh output."""

    def __init__(self, ngf: int = 64, blocks: int = 9) -> None:
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3), nn.Conv2d(3, ngf, 7), nn.InstanceNorm2d(ngf), nn.ReLU(True),
            nn.Conv2d(ngf, 2 * ngf, 3, stride=2, padding=1), nn.InstanceNorm2d(2 * ngf), nn.ReLU(True),
            nn.Conv2d(2 * ngf, 4 * ngf, 3, stride=2, padding=1), nn.InstanceNorm2d(4 * ngf), nn.ReLU(True),
        ]
        layers += [ResnetBlock(4 * ngf) for _ in range(blocks)]
        layers += [
            nn.ConvTranspose2d(4 * ngf, 2 * ngf, 3, stride=2, padding=1, output_padding=1),
            nn.InstanceNorm2d(2 * ngf), nn.ReLU(True),
            nn.ConvTranspose2d(2 * ngf, ngf, 3, stride=2, padding=1, output_padding=1),
            nn.InstanceNorm2d(ngf), nn.ReLU(True),
            nn.ReflectionPad2d(3), nn.Conv2d(ngf, 3, 7), nn.Tanh(),
        ]
        super().__init__(*layers)


class TwinGANDirection(nn.Module):
    def __init__(self, model: TwinGAN) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.translate(x, 0, 1)


def parameter_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_batches(run: Callable[[], object], device: torch.device, warmup: int, min_time: float, min_iters: int) -> float:
    """Seconds per call, after ``warmup`` calls, over at least ``min_iters`` calls and ``min_time`` seconds."""
    for _ in range(warmup):
        run()
    synchronize(device)
    calls = 0
    start = time.perf_counter()
    while calls < min_iters or time.perf_counter() - start < min_time:
        run()
        calls += 1
    synchronize(device)
    return (time.perf_counter() - start) / calls


def model_variants(device: torch.device, compile_models: bool) -> list[str]:
    if device.type != "cuda":
        return ["fp32"]
    variants = ["fp32", "bf16+channels_last"]
    if compile_models:
        variants.append("bf16+channels_last+compile")
    return variants


def bench_models(args: argparse.Namespace, device: torch.device) -> list[dict]:
    rows = []
    for res in args.resolutions:
        twingan = TwinGAN(ModelConfig(domains=("human", "anime"), resolution=res, max_channels=256))
        nets = {"TwinGAN (max_channels 256)": TwinGANDirection(twingan), "CycleGAN ResNet-9 (ngf 64)": ResnetGenerator9()}
        for name, net in nets.items():
            for variant in model_variants(device, args.compile):
                module = net.to(device).eval()
                memory_format = torch.channels_last if "channels_last" in variant else torch.contiguous_format
                module = module.to(memory_format=memory_format)
                runner = torch.compile(module) if "compile" in variant else module
                autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled="bf16" in variant)
                for batch in args.batch_sizes:
                    x = (torch.rand(batch, 3, res, res, device=device) * 2 - 1).to(memory_format=memory_format)

                    def run() -> None:
                        with torch.inference_mode(), autocast:
                            runner(x)

                    seconds = time_batches(run, device, args.warmup, args.min_time, args.min_iters)
                    row = {"resolution": res, "model": name, "variant": variant, "batch": batch,
                           "images_per_s": batch / seconds, "params_m": parameter_count(net) / 1e6}
                    rows.append(row)
                    print(f"  {res:>4} px  {name:<28} {variant:<27} batch {batch:>3}: "
                          f"{row['images_per_s']:8.2f} img/s", flush=True)
            net.to("cpu")
    return rows


def make_photos(folder: Path, count: int) -> list[InputFile]:
    """``count`` different 512 x 512 one-face JPEGs made from skimage's astronaut."""
    from skimage import data

    base = data.astronaut()
    files = []
    for i in range(count):
        shifted = np.roll(base, shift=(i * 7) % 40 - 20, axis=1)
        if i % 2:
            shifted = shifted[:, ::-1]
        path = folder / f"photo{i:03d}.jpg"
        Image.fromarray(np.ascontiguousarray(shifted)).save(path, quality=92)
        files.append(InputFile(path, Path(path.stem)))
    return files


def photo_files(folder: Path) -> list[InputFile]:
    """The pictures of a folder of photos (``--photo-dir``), as `twingan translate` collects them."""
    inputs = collect_inputs([str(folder)])
    if not inputs.files:
        raise SystemExit(f"--photo-dir {folder}: no pictures there")
    return inputs.files


def bench_end_to_end(args: argparse.Namespace, device: torch.device) -> list[dict]:
    rows = []
    detector = FaceDetector(device=device)
    with tempfile.TemporaryDirectory() as tmp:
        files = photo_files(args.photo_dir) if args.photo_dir else make_photos(Path(tmp), args.photos)
        for res in args.resolutions:
            model = TwinGAN(ModelConfig(domains=("human", "anime"), resolution=res, max_channels=256))
            pipeline = FacePipeline(Translator(model.to(device).eval()), detector)
            for batch in args.batch_sizes:
                options = OutputOptions(Path(tmp) / f"out{res}_{batch}", overwrite=True)
                translate_files(pipeline, files[: min(batch, len(files))], "anime", "human", options,
                                batch_size=batch, progress=False)  # warm-up
                synchronize(device)
                start, cpu = time.perf_counter(), time.process_time()
                summary = translate_files(pipeline, files, "anime", "human", options, batch_size=batch,
                                          progress=False, report=lambda line: None)
                synchronize(device)
                seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
                if not args.photo_dir and (summary.failed or summary.faces != len(files)):
                    raise RuntimeError(f"end-to-end run lost photos: {summary.line()}, {summary.faces} faces")
                rows.append({"resolution": res, "batch": batch, "photos_per_s": len(files) / seconds,
                             "cpu_s_per_photo": cpu / len(files), "photos": len(files),
                             "with_face": summary.translated, "faces": summary.faces})
                print(f"  {res:>4} px  end to end, batch {batch:>3}: {len(files) / seconds:8.2f} photos/s, "
                      f"{cpu / len(files):.3f} CPU s/photo, faces in {summary.translated} of {len(files)} photos "
                      f"({summary.faces} faces)", flush=True)
    return rows


def print_tables(model_rows: list[dict], e2e_rows: list[dict], device: torch.device) -> None:
    print(f"\nmodel only ({device.type}), images/s")
    print("| resolution | model | params (M) | variant | batch | images/s |")
    print("|---:|---|---:|---|---:|---:|")
    for r in model_rows:
        print(f"| {r['resolution']} | {r['model']} | {r['params_m']:.2f} | {r['variant']} | {r['batch']} | "
              f"{r['images_per_s']:.2f} |")
    if e2e_rows:
        print(f"\nend to end ({device.type}): decode + MTCNN + alignment + TwinGAN + PNG, photos/s")
        print("| resolution | photos per batch | photos/s | CPU s per photo | photos with a face | faces |")
        print("|---:|---:|---:|---:|---:|---:|")
        for r in e2e_rows:
            print(f"| {r['resolution']} | {r['batch']} | {r['photos_per_s']:.2f} | {r['cpu_s_per_photo']:.3f} | "
                  f"{r['with_face']} of {r['photos']} | {r['faces']} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--resolutions", type=int, nargs="+", default=[128, 256])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cpu or cuda")
    parser.add_argument("--photos", type=int, default=32, help="photos for the end-to-end runs (0: skip them)")
    parser.add_argument("--end-to-end-only", action="store_true", help="skip the model-only timings")
    parser.add_argument("--photo-dir", type=Path, help="end to end on the photos of this folder instead (faces counted)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed batches per model variant")
    parser.add_argument("--min-time", type=float, default=3.0, help="seconds timed per model variant at least")
    parser.add_argument("--min-iters", type=int, default=2, help="batches timed per model variant at least")
    parser.add_argument("--no-compile", dest="compile", action="store_false", help="GPU: skip torch.compile")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    load = os.getloadavg()
    print(f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    model_rows = [] if args.end_to_end_only else bench_models(args, device)
    e2e_rows = bench_end_to_end(args, device) if args.photos > 0 or args.photo_dir else []
    print_tables(model_rows, e2e_rows, device)
    load = os.getloadavg()
    print(f"\nload average at the end {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


if __name__ == "__main__":
    main()
