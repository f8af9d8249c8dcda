"""Independent float32 PyTorch reference of the decoder families openlora serves (test tooling only).

Written from the Hugging Face transformers modeling files, eager attention path, line by line
(transformers is not installed here: Debian's python3-torch 1.13 only):
  - Llama / Mistral / Qwen2: models/llama/modeling_llama.py, models/mistral/modeling_mistral.py,
    models/qwen2/modeling_qwen2.py (q/k/v bias; sliding window on layers >= max_window_layers
    when use_sliding_window).
  - Qwen3: models/qwen3/modeling_qwen3.py (Qwen3Attention: q_norm/k_norm, RMSNorm over head_dim,
    applied to q and k before RoPE; explicit head_dim; attention_bias).
  - Gemma 2: models/gemma2/modeling_gemma2.py (Gemma2RMSNorm `x * (1 + w)` in float32; embeddings
    times sqrt(hidden_size); Gemma2MLP gelu_pytorch_tanh; Gemma2Attention scaling
    query_pre_attn_scalar**-0.5 and attn_logit_softcapping; Gemma2DecoderLayer pre/post attention
    and pre/post feedforward norms; Gemma2ForCausalLM final_logit_softcapping; layer_types
    sliding on even layers).
  - Gemma 3 text: models/gemma3/modeling_gemma3.py (Gemma2's block plus q_norm/k_norm;
    sliding_window_pattern: layer i is sliding unless (i + 1) % pattern == 0; local layers use
    rope_local_base_freq with default RoPE, global layers rope_theta with rope_scaling).
  - Phi-3: models/phi3/modeling_phi3.py (fused qkv_proj sliced q | k | v; fused gate_up_proj
    chunked gate | up, up * silu(gate); partial_rotary_factor; longrope).
  - RoPE inverse frequencies: modeling_rope_utils.py (_compute_default_rope_parameters,
    _compute_linear_scaling_rope_parameters, _compute_llama3_parameters,
    _compute_yarn_parameters, _compute_longrope_parameters), cos/sin times attention_scaling.
  - Sliding-window mask: masking_utils.sliding_window_overlay: key j is visible from query i when
    i - sliding_window < j <= i (the window holds `sliding_window` keys, the query's own included).
LoRA follows peft/tuners/lora/layer.py Linear.forward, unmerged: y = base(x) + B(A(x)) * scaling
for each active adapter, times the adapter's weight in a `cat` composition.
"""
import math

import torch
import torch.nn.functional as F

GEMMA = ("gemma2", "gemma3_text")


def rms_norm(x, w, eps):
    """LlamaRMSNorm / Qwen3RMSNorm / Phi3RMSNorm: w * (x * rsqrt(mean(x^2) + eps)), in float32."""
    var = x.pow(2).mean(-1, keepdim=True)
    return w * (x * torch.rsqrt(var + eps))


def gemma_rms_norm(x, w, eps):
    """Gemma2RMSNorm / Gemma3RMSNorm: (x * rsqrt(mean(x^2) + eps)) * (1 + w)."""
    out = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
    return out * (1.0 + w)


def rope_parameters(cfg, theta, scaling, rot_dim, seq_len):
    """(inv_freq float32 [rot_dim/2], attention_scaling) as modeling_rope_utils computes them."""
    base = float(theta)
    inv = 1.0 / (base ** (torch.arange(0, rot_dim, 2, dtype=torch.int64).float() / rot_dim))
    kind = (scaling or {}).get("rope_type", (scaling or {}).get("type", "default"))
    if kind == "default":
        return inv, 1.0
    if kind == "linear":  # _compute_linear_scaling_rope_parameters
        return inv / scaling["factor"], 1.0
    if kind == "llama3":  # _compute_llama3_parameters
        factor, lo, hi = scaling["factor"], scaling["low_freq_factor"], scaling["high_freq_factor"]
        old = scaling["original_max_position_embeddings"]
        low_wl, high_wl = old / lo, old / hi
        wavelen = 2 * math.pi / inv
        out = torch.where(wavelen > low_wl, inv / factor, inv)
        smooth = (old / wavelen - lo) / (hi - lo)
        smoothed = (1 - smooth) * out / factor + smooth * out
        medium = ~(wavelen < high_wl) * ~(wavelen > low_wl)
        return torch.where(medium, smoothed, out), 1.0
    if kind == "yarn":  # _compute_yarn_parameters
        factor = scaling["factor"]
        orig = scaling.get("original_max_position_embeddings") or cfg["max_position_embeddings"]
        attention_factor = scaling.get("attention_factor")
        mscale, mscale_all_dim = scaling.get("mscale"), scaling.get("mscale_all_dim")

        def get_mscale(scale, m=1):
            return 1.0 if scale <= 1 else 0.1 * m * math.log(scale) + 1.0

        if attention_factor is None:
            if mscale and mscale_all_dim:
                attention_factor = float(get_mscale(factor, mscale) / get_mscale(factor, mscale_all_dim))
            else:
                attention_factor = get_mscale(factor)
        beta_fast = scaling.get("beta_fast") or 32
        beta_slow = scaling.get("beta_slow") or 1

        def corr_dim(rot):
            return (rot_dim * math.log(orig / (rot * 2 * math.pi))) / (2 * math.log(base))

        low, high = corr_dim(beta_fast), corr_dim(beta_slow)
        if scaling.get("truncate", True):
            low, high = math.floor(low), math.ceil(high)
        low, high = max(low, 0), min(high, rot_dim - 1)
        if low == high:
            high += 0.001
        ramp = torch.clamp((torch.arange(rot_dim // 2, dtype=torch.float32) - low) / (high - low), 0, 1)
        pos_freqs = base ** (torch.arange(0, rot_dim, 2).float() / rot_dim)
        extra, inter = 1.0 / pos_freqs, 1.0 / (factor * pos_freqs)
        extra_factor = 1 - ramp
        return inter * (1 - extra_factor) + extra * extra_factor, attention_factor
    if kind == "dynamic":  # _compute_dynamic_ntk_parameters (dynamic_rope_update: seq_len of the forward)
        L, factor = cfg["max_position_embeddings"], scaling["factor"]
        n = seq_len if seq_len > L else L
        base = base * ((factor * n / L) - (factor - 1)) ** (rot_dim / (rot_dim - 2))
        return 1.0 / (base ** (torch.arange(0, rot_dim, 2, dtype=torch.int64).float() / rot_dim)), 1.0
    if kind in ("longrope", "su"):  # _compute_longrope_parameters (+ dynamic_rope_update long/short)
        orig = scaling.get("original_max_position_embeddings") or cfg.get("original_max_position_embeddings")
        factor = cfg["max_position_embeddings"] / orig
        attention_factor = scaling.get("attention_factor")
        if attention_factor is None:
            attention_factor = 1.0 if factor <= 1.0 else math.sqrt(1 + math.log(factor) / math.log(orig))
        ext = scaling["long_factor"] if seq_len > orig else scaling["short_factor"]
        ext = torch.tensor(ext, dtype=torch.float32)
        pos = base ** (torch.arange(0, rot_dim, 2, dtype=torch.int64).float() / rot_dim)
        return 1.0 / (ext * pos), attention_factor
    raise ValueError(f"rope type {kind}")


def rotate_half(x):
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2 :]
    return torch.cat((-x2, x1), dim=-1)


def apply_rope(x, inv, scale, positions):
    """x [T, heads, head_dim]; the first 2*len(inv) dims rotate (Phi-3 partial rotary), the rest pass."""
    freqs = positions.float()[:, None] * inv[None, :]
    emb = torch.cat((freqs, freqs), dim=-1)
    cos, sin = (emb.cos() * scale)[:, None, :], (emb.sin() * scale)[:, None, :]
    rd = emb.shape[-1]
    xr, xp = x[..., :rd], x[..., rd:]
    return torch.cat(((xr * cos) + (rotate_half(xr) * sin), xp), dim=-1)


def layer_types(cfg):
    """'sliding_attention' / 'full_attention' per layer, as each family's config class derives them."""
    n, mt = cfg["num_hidden_layers"], cfg["model_type"]
    if cfg.get("layer_types"):
        return list(cfg["layer_types"])
    sw = cfg.get("sliding_window")
    if mt == "mistral":
        return ["sliding_attention" if sw else "full_attention"] * n
    if mt in ("qwen2", "qwen3"):
        use = cfg.get("use_sliding_window", False) and sw
        return ["sliding_attention" if use and i >= cfg.get("max_window_layers", n) else "full_attention" for i in range(n)]
    if mt == "gemma2":
        return ["sliding_attention" if (i + 1) % 2 else "full_attention" for i in range(n)]
    if mt == "gemma3_text":
        p = cfg.get("sliding_window_pattern", 6)
        return ["sliding_attention" if (i + 1) % p else "full_attention" for i in range(n)]
    if mt == "phi3" and sw:
        return ["sliding_attention"] * n
    return ["full_attention"] * n


class Reference:
    """A decoder model of one family in float32. `w`: {HF tensor name: float32 tensor}."""

    def __init__(self, cfg, w):
        self.c, self.w = cfg, w
        c = cfg
        self.mt = c["model_type"]
        self.H = c["hidden_size"]
        self.nh, self.nkv = c["num_attention_heads"], c.get("num_key_value_heads") or c["num_attention_heads"]
        self.hd = c.get("head_dim") or self.H // self.nh
        self.eps = c.get("rms_norm_eps", 1e-6)
        self.types = layer_types(c)
        self.norm = gemma_rms_norm if self.mt in GEMMA else rms_norm
        self.rot_dim = int(self.hd * c.get("partial_rotary_factor", 1.0))

    def lin(self, x, name, loras):
        """nn.Linear (+ bias when the checkpoint has one) + unmerged LoRA of every adapter targeting `name`."""
        y = x @ self.w[name + ".weight"].T
        if name + ".bias" in self.w:
            y = y + self.w[name + ".bias"]
        for adapter, weight in loras:
            p = adapter.get(name)
            if p is not None:
                a, b, s = p
                y = y + (x @ a.T) @ b.T * (s * weight)
        return y

    def rope_for(self, layer, seq_len):
        c = self.c
        if self.mt == "gemma3_text" and self.types[layer] == "sliding_attention":
            # Gemma3TextModel.rotary_emb_local: rope_local_base_freq, rope_type default.
            return rope_parameters(c, c.get("rope_local_base_freq", 10000.0), None, self.rot_dim, seq_len)
        return rope_parameters(c, c.get("rope_theta", 10000.0), c.get("rope_scaling"), self.rot_dim, seq_len)

    def attention(self, x, l, positions, loras):
        """Self-attention of layer l over the whole sequence x [T, H] (eager_attention_forward)."""
        c, p, T = self.c, f"model.layers.{l}.self_attn.", x.shape[0]
        if self.mt == "phi3":  # Phi3Attention: qkv = qkv_proj(h); q | k | v
            qkv = self.lin(x, p + "qkv_proj", loras)
            qp, kp = self.nh * self.hd, self.nkv * self.hd
            q, k, v = qkv[:, :qp], qkv[:, qp : qp + kp], qkv[:, qp + kp :]
        else:
            q, k, v = self.lin(x, p + "q_proj", loras), self.lin(x, p + "k_proj", loras), self.lin(x, p + "v_proj", loras)
        q, k, v = q.view(T, self.nh, self.hd), k.view(T, self.nkv, self.hd), v.view(T, self.nkv, self.hd)
        if self.mt in ("qwen3", "gemma3_text"):  # q_norm / k_norm over head_dim, before RoPE
            q = self.norm(q, self.w[p + "q_norm.weight"], self.eps)
            k = self.norm(k, self.w[p + "k_norm.weight"], self.eps)
        inv, scale = self.rope_for(l, int(positions.max()) + 1)
        q, k = apply_rope(q, inv, scale, positions), apply_rope(k, inv, scale, positions)
        rep = self.nh // self.nkv
        k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)  # repeat_kv
        if self.mt in GEMMA:
            scaling = c["query_pre_attn_scalar"] ** -0.5
        else:
            scaling = self.hd ** -0.5
        s = torch.einsum("qhd,khd->hqk", q, k) * scaling
        cap = c.get("attn_logit_softcapping") if self.mt in GEMMA else None
        if cap:
            s = torch.tanh(s / cap) * cap
        i = torch.arange(T)[:, None]
        j = torch.arange(T)[None, :]
        allowed = j <= i
        if self.types[l] == "sliding_attention":
            allowed = allowed & (j > i - c["sliding_window"])
        s = s.masked_fill(~allowed[None], float("-inf"))
        attn = torch.softmax(s.float(), dim=-1)
        o = torch.einsum("hqk,khd->qhd", attn, v).reshape(T, self.nh * self.hd)
        return self.lin(o, p + "o_proj", loras)

    def mlp(self, x, l, loras):
        p = f"model.layers.{l}.mlp."
        if self.mt == "phi3":  # Phi3MLP: gate, up = gate_up_proj(x).chunk(2); down(up * silu(gate))
            gate, up = self.lin(x, p + "gate_up_proj", loras).chunk(2, dim=-1)
            return self.lin(up * F.silu(gate), p + "down_proj", loras)
        gate, up = self.lin(x, p + "gate_proj", loras), self.lin(x, p + "up_proj", loras)
        act = F.gelu(gate, approximate="tanh") if self.mt in GEMMA else F.silu(gate)
        return self.lin(act * up, p + "down_proj", loras)

    @torch.no_grad()
    def logits(self, ids, loras=(), last_only=False):
        """float32 logits [T, vocab] of the whole sequence `ids` ([1, vocab] of its last position when
        last_only), adapters [(adapter, weight)]."""
        c, w = self.c, self.w
        ids_t = torch.tensor(ids, dtype=torch.int64)
        x = w["model.embed_tokens.weight"][ids_t]
        if self.mt in GEMMA:  # normalizer = torch.tensor(hidden_size**0.5, dtype=hidden_states.dtype)
            x = x * torch.tensor(self.H ** 0.5, dtype=torch.float32)
        positions = torch.arange(len(ids))
        for l in range(c["num_hidden_layers"]):
            p = f"model.layers.{l}."
            if self.mt in GEMMA:  # Gemma2DecoderLayer / Gemma3DecoderLayer
                h = self.norm(x, w[p + "input_layernorm.weight"], self.eps)
                h = self.attention(h, l, positions, loras)
                h = self.norm(h, w[p + "post_attention_layernorm.weight"], self.eps)
                x = x + h
                h = self.norm(x, w[p + "pre_feedforward_layernorm.weight"], self.eps)
                h = self.mlp(h, l, loras)
                h = self.norm(h, w[p + "post_feedforward_layernorm.weight"], self.eps)
                x = x + h
            else:
                x = x + self.attention(self.norm(x, w[p + "input_layernorm.weight"], self.eps), l, positions, loras)
                x = x + self.mlp(self.norm(x, w[p + "post_attention_layernorm.weight"], self.eps), l, loras)
        if last_only:
            x = x[-1:]
        x = self.norm(x, w["model.norm.weight"], self.eps)
        head = w.get("lm_head.weight", w["model.embed_tokens.weight"])
        out = x @ head.T
        cap = c.get("final_logit_softcapping")
        if cap:
            out = torch.tanh(out / cap) * cap
        return out
