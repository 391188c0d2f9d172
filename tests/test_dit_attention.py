"""Linear attention: the from-scratch version against the quadratic formula it rewrites, and against
diffusers' ``SanaLinearAttnProcessor2_0`` inside a real SANA attention layer."""
import pytest
import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention, SanaLinearAttnProcessor2_0

from cotlab.dit.attention import linear_attention, softmax_attention


def quadratic_linear_attention(q, k, v, eps=1e-15):
    """The formula itself, with the N × N similarity matrix: O_i = Σ_j v_j s_ij / (Σ_j s_ij + ε),
    s_ij = ReLU(q_i)·ReLU(k_j)."""
    s = F.relu(q).double() @ F.relu(k).double().transpose(-2, -1)  # (B, h, N, N)
    return (s @ v.double()) / (s.sum(-1, keepdim=True) + eps)


def test_linear_attention_equals_the_quadratic_formula():
    torch.manual_seed(0)
    q, k, v = torch.randn(3, 2, 4, 37, 8).unbind(0)  # (B, h, N, d) each
    assert torch.allclose(linear_attention(q, k, v).double(), quadratic_linear_attention(q, k, v), atol=1e-5)


def test_linear_attention_by_hand():
    """Two tokens, d = 2. φ(q) = ReLU(q): q_1 = (1, −1) → (1, 0), q_2 = (−1, −1) → (0, 0); φ(k_1) = (2, 0),
    φ(k_2) = (1, 3). Token 1: s = (2, 1), output (2·v_1 + 1·v_2)/3 = (2·(3, 0) + (0, 6))/3 = (2, 2).
    Token 2 sees no key (s = 0): 0/(0 + ε) = 0."""
    q = torch.tensor([[1.0, -1.0], [-1.0, -1.0]])[None, None]  # (B, h, N, d)
    k = torch.tensor([[2.0, -5.0], [1.0, 3.0]])[None, None]
    v = torch.tensor([[3.0, 0.0], [0.0, 6.0]])[None, None]
    assert linear_attention(q, k, v)[0, 0].tolist() == [[2.0, 2.0], [0.0, 0.0]]


def test_linear_attention_normaliser_carries_diffusers_epsilon():
    """ε = 1e-15 shows when the similarities are that small: s = 1e-8·1e-8 = 1e-16 gives
    v·1e-16/(1e-16 + 1e-15) = v/11."""
    q = k = torch.full((1, 1, 1, 1), 1e-8)
    v = torch.full((1, 1, 1, 1), 11.0)
    assert linear_attention(q, k, v).item() == pytest.approx(1.0, rel=1e-5)


def test_linear_attention_is_a_weighted_mean_of_the_values():
    """With every ReLU feature positive, each output is a convex combination of the values: a
    constant value comes back unchanged."""
    q, k = (torch.rand(2, 1, 1, 10, 4) + 0.1).unbind(0)
    v = torch.full((1, 1, 10, 4), 3.0)
    assert torch.allclose(linear_attention(q, k, v), v, atol=1e-6)


def test_linear_attention_equals_diffusers_sana_processor():
    """The same projections, our kernel in between: equal to diffusers' processor on the same layer."""
    torch.manual_seed(0)
    D, heads = 64, 2
    attn = Attention(query_dim=D, heads=heads, dim_head=D // heads, bias=False, processor=SanaLinearAttnProcessor2_0())
    x = torch.randn(2, 50, D)  # (B, N, D)
    with torch.no_grad():
        expected = attn(x)
        q, k, v = (proj(x).unflatten(-1, (heads, -1)).transpose(1, 2) for proj in (attn.to_q, attn.to_k, attn.to_v))
        ours = attn.to_out[0](linear_attention(q, k, v).transpose(1, 2).flatten(2))
    assert torch.allclose(ours, expected, atol=1e-5)


def test_linear_attention_keeps_half_precision_finite():
    """Accumulated in fp32: 4096 tokens whose sums overflow float16 (max 65504) still come out finite."""
    q, k, v = (torch.full((1, 1, 4096, 8), 8.0, dtype=torch.float16) for _ in range(3))
    assert torch.isinf(F.relu(k).transpose(-2, -1) @ v).any()  # in float16 the sums overflow (not vacuous)
    out = linear_attention(q, k, v)
    assert out.dtype == torch.float16 and torch.allclose(out.float(), torch.full_like(out.float(), 8.0))


def test_softmax_attention_is_sdpa():
    torch.manual_seed(0)
    q, k, v = torch.randn(3, 1, 2, 9, 4).unbind(0)
    expected = torch.softmax(q @ k.transpose(-2, -1) / 2.0, -1) @ v
    assert torch.allclose(softmax_attention(q, k, v), expected, atol=1e-6)
