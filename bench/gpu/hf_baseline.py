#!/usr/bin/env python3
"""Hugging Face transformers + PEFT baseline for bench/gpu/run.sh: random-weight Llama of a given
shape, N distinct rank-r LoRA adapters (all 7 projections), mixed-adapter batches through PEFT's
`adapter_names=` (one adapter per sequence), prefill then greedy decode with the HF KV cache.

Prints one row per (batch, adapters) and writes --out JSON. Cells stop when --budget-s is spent
(the rest are recorded as skipped) so the one-call GPU run stays within its 8 minutes.
"""
import argparse, json, time

import torch
from transformers import LlamaConfig, LlamaForCausalLM
from peft import LoraConfig, get_peft_model


def ints(s):
    return [int(x) for x in s.split(',') if x]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--device', default='cuda')
    ap.add_argument('--shape', default='4096,32,32,8,14336', help='hidden,layers,heads,kvheads,inter')
    ap.add_argument('--vocab', type=int, default=128256)
    ap.add_argument('--batch', default='1,16,64,128')
    ap.add_argument('--adapters', default='0,16,128')
    ap.add_argument('--rank', type=int, default=16)
    ap.add_argument('--steps', type=int, default=16)
    ap.add_argument('--prompt-len', type=int, default=16)
    ap.add_argument('--budget-s', type=float, default=150)
    ap.add_argument('--out')
    a = ap.parse_args()
    t_start = time.time()
    h, l, nh, nkv, inter = ints(a.shape)
    dev = torch.device(a.device)
    dtype = torch.bfloat16 if dev.type == 'cuda' else torch.float32
    cfg = LlamaConfig(hidden_size=h, num_hidden_layers=l, num_attention_heads=nh, num_key_value_heads=nkv,
                      intermediate_size=inter, vocab_size=a.vocab, max_position_embeddings=8192, rope_theta=500000.0)
    torch.manual_seed(0)
    prev = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    with dev:
        model = LlamaForCausalLM(cfg)
    torch.set_default_dtype(prev)
    model.eval()
    max_ad = max(ints(a.adapters) or [0])
    targets = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj']
    t0 = time.time()
    if max_ad:
        lc = LoraConfig(r=a.rank, lora_alpha=2 * a.rank, target_modules=targets, init_lora_weights=False)
        model = get_peft_model(model, lc, adapter_name='a0')
        for i in range(1, max_ad):
            model.add_adapter(f'a{i}', lc)
        model.to(dev, dtype)
    adapter_setup_s = time.time() - t0
    print(f'model {a.shape} vocab {a.vocab} on {dev} {dtype}; {max_ad} adapters set up in {adapter_setup_s:.1f} s', flush=True)

    def sync():
        if dev.type == 'cuda':
            torch.cuda.synchronize()

    rows = []
    print(f"{'batch':>6} {'adapters':>8} {'prefill_t/s':>12} {'decode_t/s':>12}", flush=True)
    for b in ints(a.batch):
        for n in ints(a.adapters):
            if time.time() - t_start > a.budget_s:
                rows.append({'batch': b, 'adapters': n, 'skipped': 'budget'})
                print(f'{b:>6} {n:>8} {"skipped (budget)":>25}', flush=True)
                continue
            kw = {}
            if max_ad:
                kw['adapter_names'] = [f'a{i % n}' for i in range(b)] if n else ['__base__'] * b
            ids = torch.randint(0, a.vocab, (b, a.prompt_len), device=dev)
            with torch.inference_mode():
                sync(); t = time.time()
                out = model(input_ids=ids, use_cache=True, **kw)
                sync(); prefill = b * a.prompt_len / (time.time() - t)
                past = out.past_key_values
                tok = out.logits[:, -1:].argmax(-1)
                out = model(input_ids=tok, past_key_values=past, use_cache=True, **kw)  # warm-up step
                past, tok = out.past_key_values, out.logits[:, -1:].argmax(-1)
                sync(); t = time.time()
                for _ in range(a.steps):
                    out = model(input_ids=tok, past_key_values=past, use_cache=True, **kw)
                    past, tok = out.past_key_values, out.logits[:, -1:].argmax(-1)
                sync(); decode = b * a.steps / (time.time() - t)
            rows.append({'batch': b, 'adapters': n, 'prefill_tps': prefill, 'decode_tps': decode})
            print(f'{b:>6} {n:>8} {prefill:>12.1f} {decode:>12.1f}', flush=True)
            del out, past
    res = {'framework': f'transformers + peft, torch {torch.__version__}', 'device': str(dev), 'dtype': str(dtype),
           'shape': a.shape, 'vocab': a.vocab, 'rank': a.rank, 'steps': a.steps, 'prompt_len': a.prompt_len,
           'adapter_setup_s': adapter_setup_s, 'rows': rows}
    if a.out:
        with open(a.out, 'w') as f:
            json.dump(res, f, indent=1)


if __name__ == '__main__':
    main()
