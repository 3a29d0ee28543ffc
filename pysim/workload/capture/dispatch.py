"""Hooking into PyTorch: the module stack (forward pre/post hooks name each GEMM after
its module), the ``TorchDispatchMode`` that sees every aten op, and the attribution of a
backward op to the forward op whose autograd node is running."""
from __future__ import annotations

from pysim.workload.capture.records import LayerRecord, require_torch


def storage_ptr(t) -> int | None:
    """The address of a tensor's storage: tells a parameter (or a forward operand) when
    it comes back transposed or reshaped."""
    try:
        return t.untyped_storage().data_ptr()
    except Exception:  # pragma: no cover - tensor subclasses without storage
        return None


def named_args(func, args, kwargs) -> dict:
    """The arguments of an aten op call by schema name, defaults filled in."""
    names = [a.name for a in func._schema.arguments]
    out = {a.name: a.default_value for a in func._schema.arguments if a.has_default_value()}
    out.update(zip(names, args))
    out.update(kwargs or {})
    return out


class ModuleStack:
    """The modules being run, innermost last, kept by global forward hooks:
    ``(name, module, shape of the first input)``."""

    def __init__(self, torch, model):
        self.torch = torch
        self.names = {}
        if model is not None:
            self.names = {id(mod): name or "model" for name, mod in model.named_modules()}
        self._stack: list[tuple[str, object, tuple]] = []
        self._hooks = []

    def install(self) -> None:
        mm = self.torch.nn.modules.module
        self._hooks = [mm.register_module_forward_pre_hook(self._pre_hook),
                       mm.register_module_forward_hook(self._post_hook, always_call=True)]

    def remove(self) -> None:
        for hook in self._hooks:
            hook.remove()
        self._hooks = []

    def _pre_hook(self, module, args):
        name = self.names.get(id(module), type(module).__name__)
        shape = tuple(args[0].shape) if args and hasattr(args[0], "shape") else ()
        self._stack.append((name, module, shape))

    def _post_hook(self, module, args, output):
        if self._stack:
            self._stack.pop()

    def current(self) -> tuple[str, object, tuple]:
        """The innermost running module, or ``("model", None, ())`` outside any."""
        return self._stack[-1] if self._stack else ("model", None, ())


class Attribution:
    """Forward outputs -> the layer records that produced them, looked up by the autograd
    node that runs during ``backward()`` (the output's ``grad_fn``)."""

    def __init__(self):
        self._pending: list[tuple[object, list[LayerRecord]]] = []
        self._by_node: dict[int, tuple[object, list[LayerRecord]]] = {}

    def remember(self, output, layers: list[LayerRecord]) -> None:
        # grad_fn is only set after the op returns: resolved on the first lookup
        self._pending.append((output, layers))

    def lookup(self, node) -> list[LayerRecord] | None:
        if self._pending:
            for output, layers in self._pending:
                grad_fn = getattr(output, "grad_fn", None)
                if grad_fn is not None:
                    self._by_node[id(grad_fn)] = (grad_fn, layers)
            self._pending.clear()
        hit = self._by_node.get(id(node))
        return hit[1] if hit is not None and hit[0] is node else None

    def clear(self) -> None:
        self._pending.clear()
        self._by_node.clear()


def make_dispatch_mode(on_op, errors: list):
    """A ``TorchDispatchMode`` (torch imported here, lazily) that runs every op, then
    ``on_op(func, args, kwargs, out)`` under ``no_grad``; an exception of ``on_op`` is
    appended to ``errors`` (raised when the capture ends) so the model run completes."""
    torch = require_torch()
    from torch.utils._python_dispatch import TorchDispatchMode

    class _Mode(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            try:
                with torch.no_grad():
                    on_op(func, args, kwargs or {}, out)
            except Exception as error:  # surface capture bugs after the op completes
                errors.append(error)
            return out

    return _Mode()
