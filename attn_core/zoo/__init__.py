"""The model zoo: which face ViTs exist, where their weights come from, and how one is built and loaded.

``specs``: :class:`BackboneSpec`, one frozen description per backbone (architecture, preprocessing, provenance).
``registry``: the one registry of backbones, the default order and weight discovery. ``weights``: checkpoint
reading (safetensors first; pickles only under ``torch.load(weights_only=True)``). ``hub``: Hugging Face Hub
downloads. ``face_vit``: the insightface/CVLface ViT definition. ``backbone``: :func:`load_backbone`.
"""

from attn_core.zoo.backbone import (
    Backbone,
    cached_backbone,
    load_backbone,
    return_freed_memory,
    spec_of_module,
)
from attn_core.zoo.hub import HubError, check_reachable, offline_reason, treat_as_offline
from attn_core.zoo.registry import (
    DEFAULT_BACKBONE,
    ONLINE_DEFAULT,
    TIMM_TEST_MODEL,
    BackboneNotAvailable,
    default_order,
    fetch_weights,
    fetchable,
    get_spec,
    how_to_get,
    installed_default,
    list_backbones,
    local_weights,
    no_backbone_message,
    register,
    resolve_default,
    weights_available,
)
from attn_core.zoo.specs import BackboneSpec, WeightsSource
from attn_core.zoo.weights import CheckpointError, read_state_dict

__all__ = [
    "DEFAULT_BACKBONE", "ONLINE_DEFAULT", "TIMM_TEST_MODEL", "Backbone", "BackboneNotAvailable", "BackboneSpec", "CheckpointError",
    "HubError", "WeightsSource", "cached_backbone", "check_reachable", "default_order", "fetch_weights", "fetchable",
    "get_spec", "how_to_get", "installed_default", "list_backbones", "load_backbone", "local_weights", "no_backbone_message",
    "offline_reason", "read_state_dict", "register", "resolve_default", "return_freed_memory", "spec_of_module",
    "treat_as_offline",
    "weights_available",
]
