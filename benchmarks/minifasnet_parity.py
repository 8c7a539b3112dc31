"""Parity check: kyc's torch-free MiniFASNet ONNX conversion against PyTorch itself.

Dev tool, not part of the library or its tests. Run it with a Python that has torch, onnx
and onnxruntime (never the main venv), pointing at the project's sources:

    python3 -m venv /work/venvs/torch
    /work/venvs/torch/bin/pip install torch onnx onnxruntime opencv-python-headless
    /work/venvs/torch/bin/python benchmarks/minifasnet_parity.py \\
        --models ../shared/models --data ../shared/data

For each of the two published state dicts it

1. loads the file with ``torch.load(weights_only=True)`` and checks that
   :func:`kyc.models.minifasnet_convert.read_torch_state_dict` returns the same tensors, bit
   for bit;
2. builds the reference network in PyTorch (the architecture of minivision-ai's
   ``src/model_lib/MiniFASNet.py``, re-typed here for checking only), loads the weights and
   runs it in eval mode;
3. converts the file with :func:`convert_minifasnet_pth` and runs the ONNX model with
   onnxruntime on the same inputs: live and spoof face crops of ``pad/replay_2019`` resized
   to 80x80 BGR 0..255, plus the ``pad/silent_face_samples`` images;
4. re-saves the state dict with ``torch.save`` (zip format) and checks the conversion of that
   file is byte-identical to the conversion of the legacy file.

It prints the largest absolute logit difference per model and exits 1 when it exceeds
``--tol`` (default 1e-4).
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from kyc.models.minifasnet_convert import (  # noqa: E402
    convert_minifasnet_pth,
    read_torch_state_dict,
)

MODELS = {
    "2.7_80x80_MiniFASNetV2.pth": ("V2", False),
    "4_0_0_80x80_MiniFASNetV1SE.pth": ("V1", True),
}

# channel plans of the published networks ("1.8M" = V1, "1.8M_" = V2)
KEEP = {
    "V1": [32, 32, 103, 103, 64, 13, 13, 64, 26, 26, 64, 13, 13, 64, 52, 52, 64, 231, 231,
           128, 154, 154, 128, 52, 52, 128, 26, 26, 128, 52, 52, 128, 26, 26, 128, 26, 26,
           128, 308, 308, 128, 26, 26, 128, 26, 26, 128, 512, 512],
    "V2": [32, 32, 103, 103, 64, 13, 13, 64, 13, 13, 64, 13, 13, 64, 13, 13, 64, 231, 231,
           128, 231, 231, 128, 52, 52, 128, 26, 26, 128, 77, 77, 128, 26, 26, 128, 26, 26,
           128, 308, 308, 128, 26, 26, 128, 26, 26, 128, 512, 512],
}  # fmt: skip


class ConvBN(nn.Module):
    """Conv (no bias) + BN, optionally PReLU (Conv_block / Linear_block)."""

    def __init__(
        self, cin: int, cout: int, k: int = 1, s: int = 1, p: int = 0, g: int = 1, act: bool = True
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, s, p, groups=g, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.prelu = nn.PReLU(cout) if act else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(self.conv(x))
        return self.prelu(x) if self.prelu is not None else x


class SE(nn.Module):
    def __init__(self, c: int, r: int = 4) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(c, c // r, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c // r)
        self.fc2 = nn.Conv2d(c // r, c, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x.mean(dim=(2, 3), keepdim=True)
        y = torch.relu(self.bn1(self.fc1(y)))
        return x * torch.sigmoid(self.bn2(self.fc2(y)))


class DW(nn.Module):
    """Depth_Wise (optionally with SE on the residual branch)."""

    def __init__(
        self,
        c1: tuple[int, int],
        c2: tuple[int, int],
        c3: tuple[int, int],
        residual: bool,
        stride: int,
        se: bool = False,
    ) -> None:
        super().__init__()
        self.conv = ConvBN(c1[0], c1[1])
        self.conv_dw = ConvBN(c2[0], c2[1], 3, stride, 1, g=c2[0])
        self.project = ConvBN(c3[0], c3[1], act=False)
        self.residual = residual
        if se:
            self.se_module = SE(c3[1])
        self.se = se

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.conv_dw(self.conv(x)))
        if not self.residual:
            return y
        if self.se:
            y = self.se_module(y)
        return x + y


class Res(nn.Module):
    def __init__(self, keep: list[int], idx: list[int], se: bool) -> None:
        super().__init__()
        blocks = []
        for n, i in enumerate(idx):
            last = n == len(idx) - 1
            blocks.append(
                DW(
                    (keep[i], keep[i + 1]),
                    (keep[i + 1], keep[i + 2]),
                    (keep[i + 2], keep[i + 3]),
                    True,
                    1,
                    se and last,
                )
            )
        self.model = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class MiniFASNetRef(nn.Module):
    def __init__(self, keep: list[int], se: bool, emb: int = 128, classes: int = 3) -> None:
        super().__init__()
        k = keep
        self.conv1 = ConvBN(3, k[0], 3, 2, 1)
        self.conv2_dw = ConvBN(k[0], k[1], 3, 1, 1, g=k[1])
        self.conv_23 = DW((k[1], k[2]), (k[2], k[3]), (k[3], k[4]), False, 2)
        self.conv_3 = Res(k, [4, 7, 10, 13], se)
        self.conv_34 = DW((k[16], k[17]), (k[17], k[18]), (k[18], k[19]), False, 2)
        self.conv_4 = Res(k, [19, 22, 25, 28, 31, 34], se)
        self.conv_45 = DW((k[37], k[38]), (k[38], k[39]), (k[39], k[40]), False, 2)
        self.conv_5 = Res(k, [40, 43], se)
        self.conv_6_sep = ConvBN(k[46], k[47])
        self.conv_6_dw = ConvBN(k[47], k[48], 5, 1, 0, g=k[48], act=False)
        self.linear = nn.Linear(512, emb, bias=False)
        self.bn = nn.BatchNorm1d(emb)
        self.drop = nn.Dropout(0.2)
        self.prob = nn.Linear(emb, classes, bias=False)
        self.emb = emb

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for m in (
            self.conv1,
            self.conv2_dw,
            self.conv_23,
            self.conv_3,
            self.conv_34,
            self.conv_4,
            self.conv_45,
            self.conv_5,
            self.conv_6_sep,
            self.conv_6_dw,
        ):
            x = m(x)
        x = x.flatten(1)
        if self.emb != 512:
            x = self.linear(x)
        return self.prob(self.drop(self.bn(x)))


def load_inputs(data: Path) -> tuple[np.ndarray, int, int]:
    """All replay_2019 crops plus silent_face samples, 80x80 BGR float32 0..255, NCHW."""
    crops: list[np.ndarray] = []
    counts = []
    for sub in ("live", "spoof"):
        files = sorted((data / "pad" / "replay_2019" / sub).glob("*.png"))
        counts.append(len(files))
        for f in files:
            img = cv2.imread(str(f), cv2.IMREAD_COLOR)
            crops.append(cv2.resize(img, (80, 80), interpolation=cv2.INTER_LINEAR))
    for f in sorted((data / "pad" / "silent_face_samples" / "images").rglob("*.jpg")):
        img = cv2.imread(str(f), cv2.IMREAD_COLOR)
        if img is not None:
            crops.append(cv2.resize(img, (80, 80), interpolation=cv2.INTER_LINEAR))
    x = np.stack(crops).astype(np.float32).transpose(0, 3, 1, 2)
    return np.ascontiguousarray(x), counts[0], counts[1]


GOLDEN_CROPS = ("live/0.png", "live/80.png", "spoof/0.png", "spoof/75.png")


def golden_inputs(data: Path) -> np.ndarray:
    """Central 80x80 windows of a few replay_2019 crops: no resampling, so the pixels (and the
    logits) do not depend on the OpenCV version; tests pin PyTorch's logits for these."""
    chips = []
    for rel in GOLDEN_CROPS:
        img = cv2.imread(str(data / "pad" / "replay_2019" / rel), cv2.IMREAD_COLOR)
        top, left = (img.shape[0] - 80) // 2, (img.shape[1] - 80) // 2
        chips.append(img[top : top + 80, left : left + 80])
    return np.ascontiguousarray(np.stack(chips).astype(np.float32).transpose(0, 3, 1, 2))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", type=Path, default=ROOT.parent / "shared" / "models")
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--tol", type=float, default=1e-4)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    x, n_live, n_spoof = load_inputs(args.data)
    print(f"inputs: {len(x)} crops ({n_live} live, {n_spoof} spoof replay_2019 + samples)")
    worst = 0.0
    probs_live = []
    with tempfile.TemporaryDirectory() as tmp:
        for fname, (plan, se) in MODELS.items():
            src = args.models / fname
            ref_sd = torch.load(src, map_location="cpu", weights_only=True)
            ours = read_torch_state_dict(src)
            assert list(ours) == list(ref_sd), "tensor names/order differ"
            for k, v in ref_sd.items():
                assert np.array_equal(ours[k], v.numpy()), k
                assert ours[k].dtype == v.numpy().dtype, k
            net = MiniFASNetRef(KEEP[plan], se)
            net.load_state_dict({k.removeprefix("module."): v for k, v in ref_sd.items()})
            net.eval()
            with torch.no_grad():
                want = net(torch.from_numpy(x)).numpy()
                golden = net(torch.from_numpy(golden_inputs(args.data))).numpy()
            print(f"{fname}: PyTorch logits on {', '.join(GOLDEN_CROPS)} (central 80x80):")
            print(np.array2string(golden, precision=6, separator=", ", floatmode="fixed"))

            t0 = time.perf_counter()
            onnx_path = convert_minifasnet_pth(src, Path(tmp) / (src.stem + ".onnx"))
            took = time.perf_counter() - t0
            so = ort.SessionOptions()
            so.intra_op_num_threads = 1
            so.add_session_config_entry("session.intra_op.allow_spinning", "0")
            sess = ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])
            got = sess.run(["logits"], {"input": x})[0]
            diff = float(np.max(np.abs(got - want)))
            worst = max(worst, diff)
            p_want = torch.softmax(torch.from_numpy(want), 1).numpy()
            p_got = torch.softmax(torch.from_numpy(got), 1).numpy()
            pdiff = float(np.max(np.abs(p_got - p_want)))
            agree = float(np.mean(p_got.argmax(1) == p_want.argmax(1)))
            probs_live.append(p_got[:, 1])

            # torch's own zip serialisation must convert to the same bytes
            zip_src = Path(tmp) / (src.stem + "_zip.pth")
            torch.save(ref_sd, zip_src)
            zip_onnx = convert_minifasnet_pth(zip_src, Path(tmp) / (src.stem + "_zip.onnx"))
            same = zip_onnx.read_bytes() == onnx_path.read_bytes()
            digest = hashlib.sha256(onnx_path.read_bytes()).hexdigest()
            print(
                f"{fname}: max|logit diff| {diff:.3g}, max|prob diff| {pdiff:.3g}, "
                f"argmax agreement {agree:.3f}, logit range [{want.min():.2f}, {want.max():.2f}], "
                f"convert {took * 1000:.0f} ms, zip-format torch.save -> identical ONNX: {same}, "
                f"sha256 {digest}"
            )
            if not same:
                worst = float("inf")
    live = np.mean(probs_live, axis=0)
    print(
        f"mean averaged live prob: replay_2019 live {live[:n_live].mean():.3f}, "
        f"spoof {live[n_live : n_live + n_spoof].mean():.3f}"
    )
    ok = worst <= args.tol
    print(f"worst max abs logit diff {worst:.3g} (tol {args.tol:g}): {'OK' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
