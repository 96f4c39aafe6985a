"""FX rewrites that let litert-torch convert a PT2E int8 program to a full-integer ``.tflite``.

The converted PT2E program needs these export-only rewrites (on a copy of the
program, never on the model) before litert-torch takes it:

1. **unfold the int8 weights**: ``convert_pt2e`` stores each weight as an int8
   constant feeding a ``dequantize``; the converter only lowers the
   ``quantize -> dequantize`` pair on a float constant and fails with
   "'stablehlo.uniform_dequantize' op operand #0 must be ... quantized values"
   otherwise. The float constant is the dequantized weight, so re-quantizing it
   gives back exactly the same int8 values;
2. **route float uses through the dequantize**: where a quantized tensor is
   also read in float (the refiner concatenates the normalised image with
   features; an unannotated concat reads the raw float), the converter cannot
   give the shared tensors one scale and fails with "'tfl.pad' op quantization
   parameters violate the same scale constraint". Every float reader is moved
   onto the tensor's existing ``dequantize`` node, i.e. it sees the int8 value,
   as the integer model does anyway;
3. **float output**: the converter drops a trailing ``dequantize`` and would
   give the app an int8 alpha; a ``relu`` (an identity on a sigmoid) after it
   keeps one ``DEQUANTIZE`` + ``RELU`` on the ``S x S`` alpha, so int8 artifacts
   keep float32 I/O like every other artifact here. (A ``clamp(0, 1)`` becomes
   ``RELU_0_TO_1``, which XNNPACK does not take: it split the delegation in two.)

4. **float input**: when every use of the image is quantized, the converter
   folds the leading quantize into the input; a ``relu`` (an identity on an
   image in [0, 1]) first keeps float32 input.

Each pass edits a graph module in place and returns how many places it changed;
:func:`int8_module` applies them all to a fresh copy of the program.
"""

from __future__ import annotations

from typing import Any

import torch


def int8_module(program: torch.export.ExportedProgram) -> tuple[torch.fx.GraphModule, dict[str, int]]:
    """A copy of the converted PT2E program, rewritten for litert-torch's full-integer conversion.

    Args:
        program: ``Source.program``: batch 1, ``1 x 3 x S x S`` -> alpha ``1 x 1 x S x S``.

    Returns:
        ``(module, counts)``: the rewritten graph module (same outputs as the
        program) and how many weights / float uses / outputs each rewrite changed.
    """
    from torchao.quantization.pt2e import move_exported_model_to_eval

    gm = program.module()  # a fresh graph module each call: the source program is not touched
    move_exported_model_to_eval(gm)
    counts = {"weights_unfolded": unfold_int8_weights(gm), "float_uses_rerouted": route_float_uses(gm),
              "float_outputs": float_output(gm), "float_inputs": float_input(gm)}
    gm.graph.lint()
    gm.recompile()
    # The flag only (exported graphs refuse .eval() and ignore the mode): litert-torch
    # warns "converted in training mode" when it is set.
    for m in gm.modules():
        m.training = False
    return gm, counts


def _qd():
    import torchao.quantization.pt2e.quantize_pt2e  # noqa: F401 - registers the quantized_decomposed ops

    return torch.ops.quantized_decomposed


def _is_call(node: torch.fx.Node, ops: tuple) -> bool:
    return node.op == "call_function" and node.target in ops


def unfold_int8_weights(gm: torch.fx.GraphModule) -> int:
    """Replace each ``int8 constant -> dequantize`` by ``float constant -> quantize -> dequantize``.

    The float constant is the dequantized weight, so the quantize gives back the
    same int8 values (the form ``convert_pt2e(fold_quantize=False)`` produces,
    which litert-torch lowers). Returns the number of weights rewritten.
    """
    qd = _qd()
    pairs = {qd.dequantize_per_channel.default: qd.quantize_per_channel.default,
             qd.dequantize_per_tensor.default: qd.quantize_per_tensor.default}
    count = 0
    for node in list(gm.graph.nodes):
        if not _is_call(node, tuple(pairs)) or node.args[0].op != "get_attr":
            continue
        const = node.args[0]
        stored = _attr(gm, const.target)
        if stored.dtype not in (torch.int8, torch.uint8):
            continue
        with torch.no_grad():
            args = [_attr(gm, a.target) if isinstance(a, torch.fx.Node) else a for a in node.args]
            weight = node.target(*args, **node.kwargs)  # float32, same shape
        name = f"_{const.target.replace('.', '_')}_float"
        gm.register_buffer(name, weight)
        with gm.graph.inserting_before(node):
            attr = gm.graph.get_attr(name)
            quant = gm.graph.call_function(pairs[node.target], (attr, *node.args[1:]))
        node.replace_input_with(const, quant)
        count += 1
    gm.graph.eliminate_dead_code()
    gm.delete_all_unused_submodules()
    return count


def route_float_uses(gm: torch.fx.GraphModule) -> int:
    """Make every reader of a quantized tensor read its dequantized value.

    For each ``quantize_per_tensor(x)`` node, any other user of ``x`` that is not
    itself a quantize op (a float reader, e.g. a concat the quantizer left
    unannotated) is moved onto the quantize node's existing ``dequantize`` user
    (one is created if it has none). Returns the number of uses moved.
    """
    qd = _qd()
    quants = (qd.quantize_per_tensor.default, qd.quantize_per_tensor.tensor)
    dequants = (qd.dequantize_per_tensor.default, qd.dequantize_per_tensor.tensor)
    moved = 0
    for quant in [n for n in gm.graph.nodes if _is_call(n, quants)]:
        src = quant.args[0]
        readers = [u for u in src.users if not _is_call(u, quants)]
        if not readers:
            continue
        dequant = next((u for u in quant.users if _is_call(u, dequants)), None)
        if dequant is None:
            dequant = gm.graph.call_function(qd.dequantize_per_tensor.default, (quant, *quant.args[1:]),
                                             dict(quant.kwargs))
            quant.append(dequant)
        order = {n: i for i, n in enumerate(gm.graph.nodes)}
        if min(order[r] for r in readers) < order[dequant]:
            # A reader comes first: move the pair up to the source (topological order).
            src.append(quant)
            quant.append(dequant)
        for reader in readers:
            reader.replace_input_with(src, dequant)
            moved += 1
    return moved


def float_output(gm: torch.fx.GraphModule) -> int:
    """Put a ``relu`` after each output that is a ``dequantize``; returns how many.

    litert-torch's static conversion drops a trailing dequantize (int8 output);
    a float op after it keeps the DEQUANTIZE in the file. On alpha (a sigmoid,
    dequantized to [0, 1)) the relu is an identity, and XNNPACK runs it.
    """
    qd = _qd()
    dequants = (qd.dequantize_per_tensor.default, qd.dequantize_per_tensor.tensor)
    out = next(n for n in gm.graph.nodes if n.op == "output")
    count = 0
    for value in out.all_input_nodes:
        if _is_call(value, dequants):
            with gm.graph.inserting_after(value):
                relu = gm.graph.call_function(torch.ops.aten.relu.default, (value,))
            out.replace_input_with(value, relu)
            count += 1
    return count


def float_input(gm: torch.fx.GraphModule) -> int:
    """Put a ``relu`` between each input and its ``quantize`` nodes; returns how many inputs.

    When every use of the image is quantized (a model whose first op on the
    image is int8), litert-torch folds the leading quantize into the input and
    the file takes int8. A float op first keeps float32 input (the artifact
    contract), with the QUANTIZE inside the model. The image is in [0, 1], so
    the relu is an identity; XNNPACK runs it.
    """
    qd = _qd()
    quants = (qd.quantize_per_tensor.default, qd.quantize_per_tensor.tensor)
    count = 0
    for ph in [n for n in gm.graph.nodes if n.op == "placeholder"]:
        users = list(ph.users)
        if not users or not all(_is_call(u, quants) for u in users):
            continue
        with gm.graph.inserting_after(ph):
            relu = gm.graph.call_function(torch.ops.aten.relu.default, (ph,))
        for u in users:
            u.replace_input_with(ph, relu)
        count += 1
    return count


def _attr(gm: torch.fx.GraphModule, target: str) -> torch.Tensor:
    obj: Any = gm
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj
