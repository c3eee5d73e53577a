"""Per-peer input attributions with captum, behind one uniform call.

Every method explains one peer, ``model.peer(i)`` (a plain module: images (B, C, H, W) in
[0, 1] -> logits), so the attributions live in the same pixel space the user sees and peers can
be compared side by side. Methods are registered by name in :data:`ATTRIBUTIONS`:

* ``saliency`` -- absolute input gradient (captum ``Saliency``); >= 0.
* ``integrated_gradients`` -- gradients integrated along the path from a zero image
  (``IntegratedGradients``, 32 steps by default); signed.
* ``input_x_gradient`` -- input times gradient (``InputXGradient``); signed.
* ``smoothgrad`` -- saliency averaged over 16 copies with Gaussian noise of std 0.1
  (``NoiseTunnel``; random, seed torch for repeatable maps); >= 0.
* ``occlusion`` -- drop of the target logit when a square window (all channels) is zeroed
  (``Occlusion``), averaged over the windows covering a pixel; signed.
* ``grad_cam`` -- Grad-CAM at a peer layer (``LayerGradCam``), upsampled; >= 0.

Every map is reduced to (B, H, W) by **summing over channels** (``absolute=True`` then takes the
absolute value). ``grad_cam`` runs at the peer's last probe layer unless ``layer`` names another
module path (e.g. ``"peers.0.layer1"``); its (B, 1, h, w) map is ReLU-ed (captum's
``relu_attributions``, default on here) and upsampled bilinearly to (H, W).
"""

from __future__ import annotations

import logging
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch import nn

from analysis.errors import CollabError
from analysis.probes.hooks import peer_layers, resolve
from analysis.probes.model_state import eval_mode
from analysis.registry import Registry

log = logging.getLogger(__name__)

#: name -> ``fn(ctx, images (B, C, H, W), target (B,), **options) -> (B, C', h, w)`` where
#: ``ctx`` has ``peer`` (the module explained), ``model`` and ``index`` (the peer's index).
ATTRIBUTIONS = Registry("attribution method")


def _captum():
    """``captum.attr``, imported on first use: it pulls in matplotlib and costs ~1 s at start-up."""
    import captum.attr

    return captum.attr


@ATTRIBUTIONS.register("saliency")
def _saliency(ctx, x, target, **options):
    x.requires_grad_()  # captum warns when it has to switch gradients on itself
    return _captum().Saliency(ctx.peer).attribute(x, target=target, **options)


@ATTRIBUTIONS.register("integrated_gradients")
def _integrated_gradients(ctx, x, target, **options):
    options.setdefault("n_steps", 32)
    return _captum().IntegratedGradients(ctx.peer).attribute(x, target=target, **options)


@ATTRIBUTIONS.register("input_x_gradient")
def _input_x_gradient(ctx, x, target, **options):
    x.requires_grad_()
    return _captum().InputXGradient(ctx.peer).attribute(x, target=target, **options)


@ATTRIBUTIONS.register("smoothgrad")
def _smoothgrad(ctx, x, target, **options):
    options = {"nt_type": "smoothgrad", "nt_samples": 16, "stdevs": 0.1, **options}
    return (
        _captum().NoiseTunnel(_captum().Saliency(ctx.peer)).attribute(x, target=target, **options)
    )


@ATTRIBUTIONS.register("occlusion")
def _occlusion(ctx, x, target, *, window: int | None = None, stride: int | None = None, **options):
    """Square ``window`` (default min(H, W) // 8, at least 1) moved by ``stride`` (window // 2)."""
    chans, height, width = x.shape[1:]
    window = window or max(1, min(height, width) // 8)
    stride = stride or max(1, window // 2)
    options.setdefault("sliding_window_shapes", (chans, window, window))
    options.setdefault("strides", (chans, stride, stride))
    options.setdefault("perturbations_per_eval", 16)
    raw = _captum().Occlusion(ctx.peer).attribute(x, target=target, **options)
    # A window spanning every channel gives each channel the same drop: keep it once, so the
    # channel sum below is the drop itself rather than C times it.
    spans_channels = options["sliding_window_shapes"][0] == chans
    return raw.mean(dim=1, keepdim=True) if spans_channels else raw


@ATTRIBUTIONS.register("grad_cam")
def _grad_cam(ctx, x, target, *, layer: str | nn.Module | None = None, **options):
    if layer is None:
        paths = peer_layers(ctx.model, ctx.index)
        if not paths:
            raise CollabError(
                f"peer {ctx.index} names no probe layers; pass layer='MODULE.PATH' to grad_cam"
            )
        layer = paths[-1]
    module = resolve(ctx.model, [layer])[layer] if isinstance(layer, str) else layer
    options.setdefault("relu_attributions", True)
    return _captum().LayerGradCam(ctx.peer, module).attribute(x, target=target, **options)


def _reduce(raw: torch.Tensor, size: tuple[int, int], *, absolute: bool) -> torch.Tensor:
    """(B, C', h, w) raw attributions -> (B, H, W): channel sum, upsampled, optionally |.|."""
    summed = raw.detach().float().sum(dim=1, keepdim=True)
    if tuple(summed.shape[-2:]) != size:
        summed = F.interpolate(summed, size=size, mode="bilinear", align_corners=False)
    summed = summed[:, 0]
    return summed.abs() if absolute else summed


def _targets(peer: nn.Module, images: torch.Tensor, target) -> torch.Tensor:
    """(B,) int64 classes to explain: given ones broadcast, or the peer's top-1 class."""
    if target is None:
        with torch.no_grad():
            return peer(images).argmax(dim=-1)
    target = torch.as_tensor(target, dtype=torch.long, device=images.device)
    if target.dim() == 0:
        return target.expand(images.shape[0])
    if target.shape != (images.shape[0],):
        raise ValueError(
            f"target must be an int or ({images.shape[0]},), got {tuple(target.shape)}"
        )
    return target


def attribute(
    model: nn.Module,
    images: torch.Tensor,
    *,
    method: str,
    peer: int,
    target: int | torch.Tensor | None = None,
    absolute: bool = False,
    batch_size: int = 32,
    **method_options,
) -> torch.Tensor:
    """Attribution map of one peer's logit for ``target`` over the input pixels.

    Args:
        model: a collaborative model with ``peer(i)`` (and ``peers`` for ``grad_cam``'s layer).
        images: (B, C, H, W) images in [0, 1] (they are not modified).
        method: a name in :data:`ATTRIBUTIONS` (``ATTRIBUTIONS.list()``).
        peer: index of the peer to explain.
        target: class to explain: an int, a (B,) tensor, or None for the peer's own top-1 class.
        absolute: return the absolute value of the channel-summed map.
        batch_size: images per attribution call (IG and SmoothGrad multiply it internally).
        **method_options: passed to the captum ``attribute`` call (e.g. ``n_steps``,
            ``baselines``), plus ``window`` / ``stride`` for occlusion and ``layer`` for grad_cam.

    Returns:
        (B, H, W) float32 map on the CPU. The model's train/eval modes are restored afterwards.
    """
    fn = ATTRIBUTIONS.get(method)
    if images.dim() != 4:
        raise ValueError(f"expected images (B, C, H, W), got {tuple(images.shape)}")
    if not 0 <= peer < model.num_peers:
        raise CollabError(f"peer {peer} does not exist; the model has {model.num_peers} peers")
    device = next((p.device for p in model.parameters()), images.device)
    chunks = []
    with eval_mode(model), torch.enable_grad():
        ctx = SimpleNamespace(peer=model.peer(peer), model=model, index=peer)
        x_all = images.detach().to(device).float()
        targets = _targets(ctx.peer, x_all, target)
        for start in range(0, len(x_all), batch_size):
            x = x_all[start : start + batch_size].clone()
            raw = fn(ctx, x, targets[start : start + batch_size], **dict(method_options))
            chunks.append(_reduce(raw, tuple(x.shape[-2:]), absolute=absolute).cpu())
    log.debug("%s attributions of peer %d for %d images", method, peer, len(images))
    return torch.cat(chunks) if chunks else torch.zeros(0, *images.shape[-2:])


def attribute_all_peers(
    model: nn.Module,
    images: torch.Tensor,
    *,
    method: str,
    target: int | str | torch.Tensor | None = None,
    **options,
) -> torch.Tensor:
    """(K, B, H, W) maps of every peer, for showing the peers side by side.

    Args:
        model: a collaborative model returning ``CollabOutput``.
        images: (B, C, H, W) images in [0, 1].
        method: a name in :data:`ATTRIBUTIONS`.
        target: as in :func:`attribute` (None: each peer explains its own top-1 class), or
            ``"ensemble"``: every peer explains the ensemble's top-1 class.
        **options: the keyword options of :func:`attribute`.
    """
    if isinstance(target, str):
        if target != "ensemble":
            raise ValueError(f"target must be an int, a tensor, None or 'ensemble', not {target!r}")
        device = next((p.device for p in model.parameters()), images.device)
        with eval_mode(model), torch.no_grad():
            target = model(images.to(device).float()).ensemble_logits.argmax(-1)
    maps = [
        attribute(model, images, method=method, peer=k, target=target, **options)
        for k in range(model.num_peers)
    ]
    return torch.stack(maps)
