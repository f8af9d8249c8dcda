"""Build test/fixtures/families/<name>/: small random-weight models of each family, PEFT adapters,
and float32 reference outputs of model.py (test tooling; CI reads the committed results, no torch).

    python3 test/reference/make_fixtures.py [NAME ...]     # from the repository root

Each fixture folder holds:
  config.json                  the family's Hugging Face config (small shapes)
  weights.json                 the generator of model.safetensors (weights.py; the tests write it)
  chat_template.jinja          where the fixture uses the demo tokenizer (tokenizer: "demo")
  adapters/<a>/                PEFT adapter_config.json + adapter_model.safetensors (F32/F16/BF16)
  reference.json               per prompt and configuration: last-position logits, per-position
                               argmax and top-2 margins, greedy continuation with margins, logprobs
                               and top-5; the ensemble's mixture at the last position and greedy.
"""
import json
import math
import os
import subprocess
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from model import Reference  # noqa: E402
from weights import materialize, spec, stored_values, write_safetensors  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
OUT = os.path.join(ROOT, "test", "fixtures", "families")
GREEDY = 24
ATTN = ("q_proj", "k_proj", "v_proj", "o_proj", "qkv_proj")

GEMMA_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
    "{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
)
PHI3_TEMPLATE = (
    "{% for message in messages %}{{ '<|' + message['role'] + '|>\n' + message['content'] + '<|end|>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)


def base(model_type, arch, **kw):
    c = {
        "architectures": [arch], "model_type": model_type, "vocab_size": 1024, "hidden_size": 64,
        "intermediate_size": 128, "num_hidden_layers": 3, "num_attention_heads": 4, "num_key_value_heads": 2,
        "head_dim": 16, "max_position_embeddings": 4096, "rms_norm_eps": 1e-6, "rope_theta": 10000.0,
        "hidden_act": "silu", "tie_word_embeddings": False, "torch_dtype": "bfloat16", "bos_token_id": 1019,
        "eos_token_id": 1023,
    }
    c.update(kw)
    return c


FIXTURES = {
    # Qwen3: q_norm/k_norm, head_dim 32 != hidden/heads 16, tied head, the real 151,936-token vocabulary.
    "qwen3": dict(tokenizer="qwen3", dtype="BF16", config=base(
        "qwen3", "Qwen3ForCausalLM", vocab_size=151936, head_dim=32, num_hidden_layers=3, rope_theta=1000000.0,
        max_position_embeddings=40960, tie_word_embeddings=True, attention_bias=False, use_sliding_window=False,
        sliding_window=None, max_window_layers=3, bos_token_id=151643, eos_token_id=151645)),
    # Gemma 2: soft-capping (small caps so they bend the numbers), query_pre_attn_scalar != head_dim,
    # sliding window 12 on even layers.
    "gemma2": dict(tokenizer="demo", dtype="BF16", template=GEMMA_TEMPLATE, config=base(
        "gemma2", "Gemma2ForCausalLM", num_hidden_layers=4, head_dim=32, query_pre_attn_scalar=16,
        attn_logit_softcapping=8.0, final_logit_softcapping=6.0, sliding_window=12, hidden_act="gelu_pytorch_tanh",
        hidden_activation="gelu_pytorch_tanh", tie_word_embeddings=True, max_position_embeddings=8192)),
    # Gemma 3 text: q/k norms, pattern 3 (layers 0, 1, 3 local with window 10 and base 10000;
    # layer 2 global with base 1e6 and linear scaling x8).
    "gemma3": dict(tokenizer="demo", dtype="BF16", template=GEMMA_TEMPLATE, config=base(
        "gemma3_text", "Gemma3ForCausalLM", num_hidden_layers=4, num_key_value_heads=1, head_dim=32,
        query_pre_attn_scalar=24, sliding_window=10, sliding_window_pattern=3, rope_theta=1000000.0,
        rope_local_base_freq=10000.0, rope_scaling={"rope_type": "linear", "factor": 8.0},
        attn_logit_softcapping=None, final_logit_softcapping=None, hidden_act="gelu_pytorch_tanh",
        hidden_activation="gelu_pytorch_tanh", tie_word_embeddings=True, max_position_embeddings=32768)),
    # Phi-3: fused qkv_proj / gate_up_proj, longrope (short factors below original_max_position_embeddings).
    "phi3": dict(tokenizer="demo", dtype="BF16", template=PHI3_TEMPLATE, config=base(
        "phi3", "Phi3ForCausalLM", num_hidden_layers=2, max_position_embeddings=131072,
        original_max_position_embeddings=4096, sliding_window=None, rope_scaling={
            "type": "longrope", "short_factor": [1.0, 1.02, 1.05, 1.1, 1.2, 1.4, 1.7, 2.1],
            "long_factor": [1.0, 1.3, 1.9, 2.9, 4.4, 6.9, 9.8, 14.0]})),
    # RoPE scaling: yarn (Qwen2.5 long-context style, static) and dynamic NTK past max_position_embeddings.
    # NOTE: dynamic's greedy here recomputes every position at each length (HF without a KV cache);
    # the tests compare its prefill logits only.
    "llama-yarn": dict(tokenizer="demo", dtype="F32", config=base(
        "llama", "LlamaForCausalLM", num_hidden_layers=2, rope_theta=10000.0, max_position_embeddings=4096,
        rope_scaling={"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 1024})),
    "llama-dynamic": dict(tokenizer="demo", dtype="F32", config=base(
        "llama", "LlamaForCausalLM", num_hidden_layers=2, max_position_embeddings=32,
        rope_scaling={"rope_type": "dynamic", "factor": 2.0})),
    # Phi-4-mini style: partial_rotary_factor 0.75 (RoPE on 12 of 16 dims), Phi-3 sliding window on every
    # layer, longrope past a short original_max_position_embeddings (32): prompts longer than it use
    # long_factor (the 7-token prompt stays below it for its whole greedy run).
    "phi4-partial": dict(tokenizer="demo", dtype="BF16", template=PHI3_TEMPLATE, config=base(
        "phi3", "Phi3ForCausalLM", num_hidden_layers=2, partial_rotary_factor=0.75, sliding_window=16, rope_theta=250000.0,
        max_position_embeddings=4096, original_max_position_embeddings=32, rope_scaling={
            "rope_type": "longrope", "short_factor": [1.0, 1.1, 1.3, 1.6, 2.0, 2.5],
            "long_factor": [1.0, 1.5, 2.5, 4.0, 6.5, 10.0]})),
    # Sliding window on every layer (Mistral v0.1), window 8.
    "mistral-sw": dict(tokenizer="demo", dtype="F32", config=base(
        "mistral", "MistralForCausalLM", num_hidden_layers=2, sliding_window=8)),
    # Qwen2 with use_sliding_window: layers >= max_window_layers (1) slide, window 8; q/k/v biases.
    "qwen2-sw": dict(tokenizer="demo", dtype="BF16", config=base(
        "qwen2", "Qwen2ForCausalLM", num_hidden_layers=3, use_sliding_window=True, sliding_window=8,
        max_window_layers=1, tie_word_embeddings=True)),
}


def manifest(c, dtype):
    """weights.json: every base tensor of the family with its generator parameters."""
    H, I, V = c["hidden_size"], c["intermediate_size"], c["vocab_size"]
    hd, nh, nkv = c["head_dim"], c["num_attention_heads"], c["num_key_value_heads"]
    mt = c["model_type"]
    gemma = mt in ("gemma2", "gemma3_text")

    def lin(name, out, inp):  # uniform in +-2/sqrt(in): layers, not the embedding, drive the residual stream
        return spec(name, [out, inp], 8, int(round(math.log2(math.sqrt(inp)))) - 1)

    def norm(name, n):  # Gemma stores w of (1 + w); the others w around 1
        return spec(name, [n], 8, 2, 0) if gemma else spec(name, [n], 4, 2, 1)

    t = [spec("model.embed_tokens.weight", [V, H], 8, 2 if not gemma else 4)]
    for l in range(c["num_hidden_layers"]):
        p = f"model.layers.{l}."
        t.append(norm(p + "input_layernorm.weight", H))
        if mt == "phi3":
            t.append(lin(p + "self_attn.qkv_proj.weight", (nh + 2 * nkv) * hd, H))
        else:
            t += [lin(p + "self_attn.q_proj.weight", nh * hd, H), lin(p + "self_attn.k_proj.weight", nkv * hd, H),
                  lin(p + "self_attn.v_proj.weight", nkv * hd, H)]
        if mt == "qwen2":
            t += [spec(p + "self_attn.q_proj.bias", [nh * hd], 8, 2), spec(p + "self_attn.k_proj.bias", [nkv * hd], 8, 2),
                  spec(p + "self_attn.v_proj.bias", [nkv * hd], 8, 2)]
        if mt in ("qwen3", "gemma3_text"):
            t += [norm(p + "self_attn.q_norm.weight", hd), norm(p + "self_attn.k_norm.weight", hd)]
        t.append(lin(p + "self_attn.o_proj.weight", H, nh * hd))
        t.append(norm(p + "post_attention_layernorm.weight", H))
        if gemma:
            t += [norm(p + "pre_feedforward_layernorm.weight", H), norm(p + "post_feedforward_layernorm.weight", H)]
        if mt == "phi3":
            t.append(lin(p + "mlp.gate_up_proj.weight", 2 * I, H))
        else:
            t += [lin(p + "mlp.gate_proj.weight", I, H), lin(p + "mlp.up_proj.weight", I, H)]
        t.append(lin(p + "mlp.down_proj.weight", H, I))
    t.append(norm("model.norm.weight", H))
    if not c.get("tie_word_embeddings"):
        t.append(lin("lm_head.weight", V, H))
    return {"seed": 1234567, "dtype": dtype, "tensors": t}


def module_dims(c, m):
    H, I, hd, nh, nkv = c["hidden_size"], c["intermediate_size"], c["head_dim"], c["num_attention_heads"], c["num_key_value_heads"]
    return {"q_proj": (nh * hd, H), "k_proj": (nkv * hd, H), "v_proj": (nkv * hd, H), "o_proj": (H, nh * hd),
            "qkv_proj": ((nh + 2 * nkv) * hd, H), "gate_proj": (I, H), "up_proj": (I, H), "gate_up_proj": (2 * I, H),
            "down_proj": (H, I)}[m]


def adapter_defs(c):
    if c["model_type"] == "phi3":
        return {
            "all": dict(r=8, alpha=16, targets=["qkv_proj", "o_proj", "gate_up_proj", "down_proj"], dtype="F32"),
            "rs": dict(r=4, alpha=8, rslora=True, targets=["qkv_proj", "down_proj"], dtype="BF16"),
            "pat": dict(r=6, alpha=12, targets=["o_proj", "gate_up_proj"], rank_pattern={"o_proj": 2},
                        alpha_pattern={"o_proj": 3}, dtype="F16"),
        }
    return {
        "all": dict(r=8, alpha=16, targets=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"], dtype="F32"),
        "rs": dict(r=4, alpha=8, rslora=True, targets=["q_proj", "v_proj", "down_proj"], dtype="BF16"),
        "pat": dict(r=6, alpha=12, targets=["k_proj", "o_proj", "gate_proj", "up_proj"], rank_pattern={"o_proj": 2},
                    alpha_pattern={"o_proj": 3}, dtype="F16"),
    }


def make_adapter(c, name, d, folder, seed):
    """Write one PEFT adapter; return {module name: (A, B, scaling)} as the reference reads it."""
    g = torch.Generator().manual_seed(seed)
    tensors, pairs = {}, {}
    for l in range(c["num_hidden_layers"]):
        for m in d["targets"]:
            r = d.get("rank_pattern", {}).get(m, d["r"])
            alpha = d.get("alpha_pattern", {}).get(m, d["alpha"])
            out, inp = module_dims(c, m)
            a = (torch.rand(r, inp, generator=g) * 2 - 1) / math.sqrt(inp)
            b = (torch.rand(out, r, generator=g) * 2 - 1) * 0.5 / math.sqrt(r)
            mod = f"model.layers.{l}.{'self_attn' if m in ATTN else 'mlp'}.{m}"
            tensors[f"base_model.model.{mod}.lora_A.weight"] = a.numpy()
            tensors[f"base_model.model.{mod}.lora_B.weight"] = b.numpy()
            s = alpha / math.sqrt(r) if d.get("rslora") else alpha / r
            pairs[mod] = (torch.from_numpy(stored_values(a.numpy(), d["dtype"])),
                          torch.from_numpy(stored_values(b.numpy(), d["dtype"])), s)
    os.makedirs(folder, exist_ok=True)
    write_safetensors(os.path.join(folder, "adapter_model.safetensors"), tensors, d["dtype"])
    cfg = {"peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": "openlora/" + name,
           "r": d["r"], "lora_alpha": d["alpha"], "target_modules": d["targets"], "use_rslora": bool(d.get("rslora")),
           "rank_pattern": d.get("rank_pattern", {}), "alpha_pattern": d.get("alpha_pattern", {}),
           "lora_dropout": 0.0, "bias": "none", "fan_in_fan_out": False, "use_dora": False, "modules_to_save": None}
    with open(os.path.join(folder, "adapter_config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    return pairs


def logit_ids(last):
    """Ids whose last-position logits are stored (keeps the files small): the top 64 and a
    stride through the vocabulary (every 16th id, every 997th above 4096 ids)."""
    V = last.shape[-1]
    return sorted(set(torch.topk(last, 64).indices.tolist()) | set(range(0, V, 16 if V <= 4096 else 997)))


def r6(x):
    return float(f"{float(x):.6g}")


def margins(logits):
    top = torch.topk(logits, 2, dim=-1).values
    return top[..., 0] - top[..., 1]


def greedy(model, ids, loras, n):
    toks, steps = list(ids), []
    for _ in range(n):
        last = model.logits(toks, loras, last_only=True)[-1]
        lp = torch.log_softmax(last, -1)
        t5 = torch.topk(lp, 5)
        tok = int(t5.indices[0])
        steps.append({"token": tok, "margin": r6(margins(last)), "logprob": r6(lp[tok]),
                      "top5": [[int(i), r6(v)] for i, v in zip(t5.indices, t5.values)]})
        toks.append(tok)
    return {"tokens": [s["token"] for s in steps], "steps": steps}


def ensemble_greedy(model, ids, members, n):
    """Per step p = sum_i w_i softmax(logits_i); argmax p appended for every member."""
    toks, steps = list(ids), []
    for _ in range(n):
        p = sum(w * torch.softmax(model.logits(toks, loras, last_only=True)[-1], -1) for loras, w in members)
        top = torch.topk(p, 2)
        tok = int(top.indices[0])
        steps.append({"token": tok, "prob_margin": r6(top.values[0] - top.values[1]), "logprob": r6(torch.log(p[tok]))})
        toks.append(tok)
    return {"tokens": [s["token"] for s in steps], "steps": steps}


def build(name):
    fx = FIXTURES[name]
    c, folder = fx["config"], os.path.join(OUT, name)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(c, f, indent=2)
    man = manifest(c, fx["dtype"])
    with open(os.path.join(folder, "weights.json"), "w") as f:
        json.dump(man, f, indent=1)
    args = ["node", "--import", "tsx", os.path.join(ROOT, "test/reference/prompts.ts"), fx["tokenizer"]]
    if fx.get("template"):
        tpl = os.path.join(folder, "chat_template.jinja")
        with open(tpl, "w") as f:
            f.write(fx["template"])
        args.append(tpl)
    prompts = json.loads(subprocess.run(args, cwd=ROOT, check=True, capture_output=True, text=True).stdout)
    w = {k: torch.from_numpy(v) for k, v in materialize(man).items()}
    model = Reference(c, w)
    adapters = {a: make_adapter(c, name, d, os.path.join(folder, "adapters", a), 100 + i)
                for i, (a, d) in enumerate(adapter_defs(c).items())}
    configs = {"base": [], "all": [("all", 1.0)], "rs": [("rs", 1.0)], "pat": [("pat", 1.0)],
               "cat_all0.5_rs0.7": [("all", 0.5), ("rs", 0.7)]}
    ens_members = [("all", 0.6), ("pat", 0.4)]
    V = c["vocab_size"]
    for p in prompts:
        p["results"] = {}
        for cname, members in configs.items():
            loras = [(adapters[a], wt) for a, wt in members]
            logits = model.logits(p["input_ids"], loras)
            last = logits[-1]
            res = {"argmax": [int(i) for i in logits.argmax(-1)], "position_margins": [r6(m) for m in margins(logits)],
                   "last_logsumexp": r6(torch.logsumexp(last, -1))}
            ids = logit_ids(last)  # logsumexp covers the whole vocabulary
            res["last_logit_ids"] = ids
            res["last_logits"] = [r6(last[i]) for i in ids]
            res["greedy"] = greedy(model, p["input_ids"], loras, GREEDY)
            p["results"][cname] = res
        members = [([(adapters[a], 1.0)], wt) for a, wt in ens_members]
        probs = sum(wt * torch.softmax(model.logits(p["input_ids"], loras, last_only=True)[-1], -1) for loras, wt in members)
        top = torch.topk(probs, 2)
        p["ensemble"] = {"argmax": int(top.indices[0]), "prob_margin": r6(top.values[0] - top.values[1]),
                         "top_ids": torch.topk(probs, 20).indices.tolist(),
                         "top_probs": [r6(x) for x in torch.topk(probs, 20).values],
                         "greedy": ensemble_greedy(model, p["input_ids"], members, GREEDY)}
        print(name, p["id"], len(p["input_ids"]), "tokens", flush=True)
    ref = {
        "format_version": 1,
        "description": "Float32 outputs of test/reference/model.py (HF modeling files restated in plain PyTorch), "
                       "adapters unmerged. Base weights: weights.json (weights.py). See make_fixtures.py.",
        "family": c["model_type"], "architecture": c["architectures"][0], "tokenizer": fx["tokenizer"],
        "compute_dtype": "float32", "vocab_size": V, "float_rounding": "6 significant digits",
        "adapters": {a: {"r": d["r"], "lora_alpha": d["alpha"], "use_rslora": bool(d.get("rslora")), "dtype": d["dtype"],
                         "target_modules": d["targets"], "rank_pattern": d.get("rank_pattern", {}),
                         "alpha_pattern": d.get("alpha_pattern", {})} for a, d in adapter_defs(c).items()},
        "configs": {k: [{"adapter": a, "weight": wt} for a, wt in v] for k, v in configs.items()},
        "config_semantics": "y = W x + sum_i weight_i * scaling_i * B_i (A_i x) (PEFT cat composition)",
        "ensemble": {"members": [{"adapter": a, "weight": wt} for a, wt in ens_members],
                     "semantics": "p = sum_i weight_i * softmax(logits_i); greedy appends argmax p"},
        "greedy_new_tokens": GREEDY,
        "greedy_semantics": "argmax at every step, never stopping; margin = top1 - top2 logit; logprob/top5 = log_softmax",
        "layer_types": model.types,
        "prompts": prompts,
    }
    with open(os.path.join(folder, "reference.json"), "w") as f:
        json.dump(ref, f, separators=(",", ":"))


if __name__ == "__main__":
    torch.set_num_threads(1)
    for n in sys.argv[1:] or list(FIXTURES):
        build(n)
