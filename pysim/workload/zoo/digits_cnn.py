"""A small CNN trained on scikit-learn's ``load_digits`` (8x8 images, no download).

``conv1`` 1->8 3x3 pad 1, ReLU, ``conv2`` 8->16 3x3 pad 1, ReLU, 2x2 max-pool,
``fc`` 256->10. Trained with Adam (lr 3e-3, batch 64, 12 epochs, seed 0) on 80 % of the
1797 images (stratified split, ``random_state=0``): > 95 % test accuracy in a few seconds
on 2 CPU cores. The captured step is one forward + ``loss.backward()`` (cross-entropy,
no optimizer step) of the trained model on the first ``batch`` (32) training images:
8 GEMMs (conv1 has no dgrad: its input is the image).
"""
from __future__ import annotations

DESCRIPTION = "small CNN trained on sklearn load_digits (8x8), one training step"
EPOCHS = 12
BATCH = 32


def _deps():
    from pysim.workload.capture import PIP_HINT, CaptureError, require_torch
    torch = require_torch()
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError:
        raise CaptureError(f"model 'digits-cnn' needs scikit-learn: {PIP_HINT}") from None
    return torch, load_digits, train_test_split


def build_model():
    torch, _, _ = _deps()
    nn = torch.nn

    class DigitsCNN(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
            self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
            self.pool = nn.MaxPool2d(2)
            self.fc = nn.Linear(16 * 4 * 4, 10)

        def forward(self, x):
            x = torch.relu(self.conv1(x))
            x = self.pool(torch.relu(self.conv2(x)))
            return self.fc(x.flatten(1))

    return DigitsCNN()


def load_data(seed: int = 0):
    torch, load_digits, train_test_split = _deps()
    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(digits.target, dtype=torch.long)
    idx_train, idx_test = train_test_split(list(range(len(y))), test_size=0.2,
                                           random_state=seed, stratify=digits.target)
    return x[idx_train], y[idx_train], x[idx_test], y[idx_test]


def train(seed: int = 0, epochs: int = EPOCHS, progress=None):
    """Train from scratch; returns (model, test accuracy, data tuple)."""
    torch, _, _ = _deps()
    torch.manual_seed(seed)
    data = load_data(seed)
    x_train, y_train, x_test, y_test = data
    model = build_model()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(y_train), generator=gen)
        for start in range(0, len(order), 64):
            batch = order[start:start + 64]
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(x_train[batch]), y_train[batch])
            loss.backward()
            opt.step()
        if progress is not None:
            progress(1)
    model.eval()
    with torch.no_grad():
        acc = (model(x_test).argmax(1) == y_test).float().mean().item()
    return model, acc, data


def capture_step(model, data, tensors: bool = True, max_elements=None, batch: int = BATCH):
    """One captured training step (forward + backward) on the first ``batch`` images."""
    from pysim.workload.capture import Capture
    torch, _, _ = _deps()
    x_train, y_train = data[0][:batch], data[1][:batch]
    model.zero_grad()
    with Capture(model, tensors=tensors, max_elements=max_elements) as cap:
        loss = torch.nn.functional.cross_entropy(model(x_train), y_train)
        loss.backward()
    cap.loss = float(loss.detach())
    return cap


def run_capture(tensors: bool, max_elements, progress=None):
    import time
    start = time.perf_counter()
    model, acc, data = train(progress=progress)
    seconds = time.perf_counter() - start
    cap = capture_step(model, data, tensors, max_elements)
    info = {"test_accuracy": acc, "train_seconds": seconds, "loss": cap.loss,
            "source": f"pytorch capture: digits-cnn trained {EPOCHS} epochs (seed 0), "
                      f"test accuracy {acc:.1%}; one step, batch {BATCH}, cross-entropy"}
    return cap, info


PROGRESS_STEPS = EPOCHS
