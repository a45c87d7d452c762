"""Interventions: ablate and patch heads, head importance, the logit lens and the residual stream.

Every intervention goes through the one attention dispatch (``attnlab.models.gates`` gates each head's
output before W_O), so from-scratch models and Hugging Face models behind the bridge behave alike.

    from attnlab.models.interventions import ablate, importance, patch_heads, logit_lens
    enc = adapter.tokenize("abcabc")
    ablate(adapter, enc, [(1, 3)], "zero").loss_change
"""

from .ablation import AblationResult, ChangedPrediction, ablate, check_heads
from .anatomy import Anatomy, Outputs, Streams, Unsupported, anatomy
from .importance import ImportanceResult, ablation_grid, gradient_importance, importance, naive_ablation_grid
from .lens import LensResult, logit_lens, naive_logit_lens
from .patching import PatchResult, patch_heads

__all__ = [
    "AblationResult", "Anatomy", "ChangedPrediction", "ImportanceResult", "LensResult", "Outputs", "PatchResult",
    "Streams", "Unsupported", "ablate", "ablation_grid", "anatomy", "check_heads", "gradient_importance",
    "importance", "logit_lens", "naive_ablation_grid", "naive_logit_lens", "patch_heads",
]
