"""Our own HF -> GGUF and PEFT -> GGUF LoRA conversion for the real-shape bench's llama.cpp peer.

Converts the random Llama folders of bench/real/models.ts (BF16 safetensors, Llama 3 tokenizer)
and the PEFT adapters of bench/adapters-gen.ts with the gguf-py package that the llama.cpp source
carries (put its `gguf-py` folder on PYTHONPATH). Needs only numpy; never imports torch or
transformers. Bench tooling, not part of openlora's run time.

  python3 to_gguf.py base [--type f16|q8_0] MODEL_DIR OUT.gguf
  python3 to_gguf.py lora MODEL_DIR ADAPTER_DIR OUT.gguf

What matches convert_hf_to_gguf.py / convert_lora_to_gguf.py for LlamaForCausalLM:
- tensor names (token_embd, blk.N.attn_q, ..., output_norm; a tied head has no output.weight);
- q_proj / k_proj rows permuted per head from HF's rotate-half RoPE layout to llama.cpp's
  interleaved-pair one: w.reshape(heads, 2, head_dim/2, in).swapaxes(1, 2) (k with the KV head
  count); for a LoRA only B's rows move (the rows of B @ A are B's rows);
- norms F32, other matrices F16 (or Q8_0 blocks of 32 via gguf.quants); LoRA A / B in F16;
- the BPE vocabulary (tokenizer.ggml.model "gpt2", pre "llama-bpe"), merges, token types
  (added special -> control, added -> user defined), bos/eos ids, chat template;
- adapters: general.type "adapter", adapter.type "lora", adapter.lora.alpha; llama.cpp scales
  B A by scale * alpha / rank like PEFT.
"""
import json
import os
import struct
import sys

import numpy as np

import gguf


def read_safetensors(path):
    """name -> numpy float32 array (BF16 / F16 / F32 inputs), read through one memory map."""
    with open(path, 'rb') as f:
        n = struct.unpack('<Q', f.read(8))[0]
        header = json.loads(f.read(n))
    raw = np.memmap(path, dtype=np.uint8, mode='r', offset=8 + n)
    out = {}
    for name, e in header.items():
        if name == '__metadata__':
            continue
        a, b = e['data_offsets']
        buf = raw[a:b]
        if e['dtype'] == 'BF16':
            arr = (buf.view(np.uint16).astype(np.uint32) << 16).view(np.float32)
        elif e['dtype'] == 'F16':
            arr = buf.view(np.float16).astype(np.float32)
        elif e['dtype'] == 'F32':
            arr = np.array(buf.view(np.float32))
        else:
            raise SystemExit(f'{path}: unsupported dtype {e["dtype"]} for {name}')
        out[name] = arr.reshape(e['shape'])
    return out


def permute(w, heads):
    """HF rotate-half rows -> llama.cpp interleaved pairs, per head (convert_hf_to_gguf's LlamaModel.permute)."""
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


NAMES = {
    'self_attn.q_proj': 'attn_q', 'self_attn.k_proj': 'attn_k', 'self_attn.v_proj': 'attn_v',
    'self_attn.o_proj': 'attn_output', 'mlp.gate_proj': 'ffn_gate', 'mlp.up_proj': 'ffn_up',
    'mlp.down_proj': 'ffn_down', 'input_layernorm': 'attn_norm', 'post_attention_layernorm': 'ffn_norm',
}


def gguf_name(hf):
    """HF tensor name (without .weight) -> GGUF name (without .weight)."""
    if hf == 'model.embed_tokens':
        return 'token_embd'
    if hf == 'model.norm':
        return 'output_norm'
    if hf == 'lm_head':
        return 'output'
    parts = hf.split('.')  # model.layers.N.<module...>
    return f'blk.{parts[2]}.{NAMES[".".join(parts[3:])]}'


def add_vocab(w, model_dir, cfg):
    tok = json.load(open(os.path.join(model_dir, 'tokenizer.json')))
    tcfg = json.load(open(os.path.join(model_dir, 'tokenizer_config.json')))
    vocab_size = cfg['vocab_size']
    tokens = [f'[PAD{i}]' for i in range(vocab_size)]
    types = [gguf.TokenType.UNUSED] * vocab_size
    for t, i in tok['model']['vocab'].items():
        tokens[i] = t
        types[i] = gguf.TokenType.NORMAL
    for a in tok.get('added_tokens', []):
        tokens[a['id']] = a['content']
        types[a['id']] = gguf.TokenType.CONTROL if a.get('special') else gguf.TokenType.USER_DEFINED
    merges = [m if isinstance(m, str) else ' '.join(m) for m in tok['model']['merges']]
    w.add_tokenizer_model('gpt2')
    w.add_tokenizer_pre('llama-bpe')
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(cfg['bos_token_id'])
    eos = cfg['eos_token_id']
    w.add_eos_token_id(eos[0] if isinstance(eos, list) else eos)
    w.add_add_bos_token(True)
    if tcfg.get('chat_template'):
        w.add_chat_template(tcfg['chat_template'])


def convert_base(model_dir, out, qtype):
    cfg = json.load(open(os.path.join(model_dir, 'config.json')))
    heads, kv = cfg['num_attention_heads'], cfg['num_key_value_heads']
    head_dim = cfg.get('head_dim', cfg['hidden_size'] // heads)
    w = gguf.GGUFWriter(out, 'llama')
    w.add_name(os.path.basename(os.path.normpath(model_dir)))
    w.add_context_length(cfg['max_position_embeddings'])
    w.add_embedding_length(cfg['hidden_size'])
    w.add_block_count(cfg['num_hidden_layers'])
    w.add_feed_forward_length(cfg['intermediate_size'])
    w.add_head_count(heads)
    w.add_head_count_kv(kv)
    w.add_key_length(head_dim)
    w.add_value_length(head_dim)
    w.add_rope_dimension_count(head_dim)
    w.add_rope_freq_base(float(cfg['rope_theta']))
    w.add_layer_norm_rms_eps(float(cfg['rms_norm_eps']))
    w.add_vocab_size(cfg['vocab_size'])
    ftype = gguf.LlamaFileType.MOSTLY_Q8_0 if qtype == 'q8_0' else gguf.LlamaFileType.MOSTLY_F16
    w.add_file_type(ftype)
    add_vocab(w, model_dir, cfg)
    for name, arr in read_safetensors(os.path.join(model_dir, 'model.safetensors')).items():
        base = name[:-len('.weight')]
        if base.endswith('q_proj'):
            arr = permute(arr, heads)
        elif base.endswith('k_proj'):
            arr = permute(arr, kv)
        gname = gguf_name(base) + '.weight'
        if arr.ndim == 1:
            w.add_tensor(gname, arr.astype(np.float32))
        elif qtype == 'q8_0':
            q = gguf.quants.quantize(arr, gguf.GGMLQuantizationType.Q8_0)
            w.add_tensor(gname, q, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
        else:
            w.add_tensor(gname, arr.astype(np.float16))
    write(w)


def convert_lora(model_dir, adapter_dir, out):
    cfg = json.load(open(os.path.join(model_dir, 'config.json')))
    heads, kv = cfg['num_attention_heads'], cfg['num_key_value_heads']
    acfg = json.load(open(os.path.join(adapter_dir, 'adapter_config.json')))
    if acfg.get('use_rslora') or acfg.get('use_dora') or acfg.get('rank_pattern') or acfg.get('alpha_pattern'):
        raise SystemExit(f'{adapter_dir}: rsLoRA / DoRA / rank or alpha patterns are not converted here')
    w = gguf.GGUFWriter(out, 'llama')
    w.add_type(gguf.GGUFType.ADAPTER)
    w.add_string(gguf.Keys.Adapter.TYPE, 'lora')
    w.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(acfg['lora_alpha']))
    tensors = read_safetensors(os.path.join(adapter_dir, 'adapter_model.safetensors'))
    prefix = 'base_model.model.'
    for name in sorted(tensors):
        if not name.endswith('.lora_A.weight'):
            continue
        base = name[len(prefix):-len('.lora_A.weight')]
        a = tensors[name]
        b = tensors[f'{prefix}{base}.lora_B.weight']
        if base.endswith('q_proj'):
            b = permute(b, heads)
        elif base.endswith('k_proj'):
            b = permute(b, kv)
        g = gguf_name(base) + '.weight'
        w.add_tensor(g + '.lora_a', a.astype(np.float16))
        w.add_tensor(g + '.lora_b', b.astype(np.float16))
    write(w)


def write(w):
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


if __name__ == '__main__':
    args = sys.argv[1:]
    qt = 'f16'
    if '--type' in args:
        i = args.index('--type')
        qt = args[i + 1]
        args = args[:i] + args[i + 2:]
    if len(args) == 3 and args[0] == 'base' and qt in ('f16', 'q8_0'):
        convert_base(args[1], args[2], qt)
    elif len(args) == 4 and args[0] == 'lora':
        convert_lora(args[1], args[2], args[3])
    else:
        raise SystemExit(__doc__)
