"""A small DeepSeek-V3 (R1 architecture) model in PyTorch, written from
docs/model.md (sections 1-3) of this repository.

Module and parameter names follow the Hugging Face DeepSeek-V3 checkpoint
(spec 5.2), so ``model.state_dict()`` keys are exactly the tensor names an
engine expects in ``model.safetensors``:

    model.embed_tokens.weight
    model.layers.{l}.input_layernorm.weight
    model.layers.{l}.self_attn.{q_a_proj,q_a_layernorm,q_b_proj,
                                kv_a_proj_with_mqa,kv_a_layernorm,kv_b_proj,o_proj}.weight
    model.layers.{l}.post_attention_layernorm.weight
    model.layers.{l}.mlp.{gate_proj,up_proj,down_proj}.weight          (dense layers)
    model.layers.{l}.mlp.gate.weight, mlp.gate.e_score_correction_bias  (MoE layers)
    model.layers.{l}.mlp.experts.{e}.{gate_proj,up_proj,down_proj}.weight
    model.layers.{l}.mlp.shared_experts.{gate_proj,up_proj,down_proj}.weight
    model.norm.weight
    lm_head.weight

RoPE uses the interleaved pair layout (spec 2.4): pairs (r[2m], r[2m+1]) of
the rope part of q and k. This is the layout the HF checkpoint weights are
trained in (the HF modelling code de-interleaves at run time), so the weights
saved from this module are in HF checkpoint layout with no permutation.
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def yarn_mscale(factor, m):
    """Spec 3.4."""
    if factor <= 1.0:
        return 1.0
    return 0.1 * m * math.log(factor) + 1.0


def yarn_inv_freq(d_rope, base, rope_scaling):
    """YaRN-adjusted inverse frequencies theta'_m, m = 0 .. d_rope/2 - 1 (spec 3.1-3.3).

    Computed in float64 (spec 3.5 recommendation)."""
    half = d_rope // 2
    m = torch.arange(half, dtype=torch.float64)
    theta = base ** (-(2.0 * m) / d_rope)
    if not rope_scaling:
        return theta
    s = float(rope_scaling["factor"])
    L = float(rope_scaling["original_max_position_embeddings"])
    beta_fast = float(rope_scaling.get("beta_fast", 32))
    beta_slow = float(rope_scaling.get("beta_slow", 1))

    def corr(n):
        return d_rope * math.log(L / (2.0 * math.pi * n)) / (2.0 * math.log(base))

    low = max(math.floor(corr(beta_fast)), 0)
    high = min(math.ceil(corr(beta_slow)), d_rope - 1)
    if low == high:
        high += 0.001
    ramp = ((m - low) / (high - low)).clamp(0.0, 1.0)
    return theta * (1.0 - ramp) + (theta / s) * ramp


def softmax_scale(cfg):
    """Spec 2.5: sigma = d_qk^-1/2 * mscale(factor, mscale_all_dim)^2."""
    d_qk = cfg["qk_nope_head_dim"] + cfg["qk_rope_head_dim"]
    sigma = d_qk ** -0.5
    rs = cfg.get("rope_scaling")
    if rs:
        ms = yarn_mscale(float(rs["factor"]), float(rs.get("mscale_all_dim", 0.0)))
        sigma = sigma * ms * ms
    return sigma


class RMSNorm(nn.Module):
    def __init__(self, n, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n))
        self.eps = eps

    def forward(self, x):
        xf = x.float()
        r = torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return (self.weight.float() * (xf * r)).to(x.dtype)


class Rotary(nn.Module):
    """cos/sin tables (fp32) for the interleaved layout, built from fp64 angles."""

    def __init__(self, cfg):
        super().__init__()
        d = cfg["qk_rope_head_dim"]
        rs = cfg.get("rope_scaling")
        inv = yarn_inv_freq(d, float(cfg["rope_theta"]), rs)
        n = cfg["max_position_embeddings"]
        ang = torch.arange(n, dtype=torch.float64)[:, None] * inv[None, :]
        # HF multiplies cos/sin by mscale/mscale_all_dim (== 1 for DeepSeek configs), spec 3.4.
        k = 1.0
        if rs:
            f = float(rs["factor"])
            k = yarn_mscale(f, float(rs.get("mscale", 1.0))) / yarn_mscale(f, float(rs.get("mscale_all_dim", 0.0)))
        self.register_buffer("cos", (torch.cos(ang) * k).float(), persistent=False)
        self.register_buffer("sin", (torch.sin(ang) * k).float(), persistent=False)

    def forward(self, x, pos):
        """x: [..., T, d_rope] (T is the axis matching pos), pos: [T] long."""
        c = self.cos[pos]
        s = self.sin[pos]
        xf = x.float()
        x0 = xf[..., 0::2]
        x1 = xf[..., 1::2]
        y0 = x0 * c - x1 * s
        y1 = x0 * s + x1 * c
        return torch.stack((y0, y1), dim=-1).flatten(-2).to(x.dtype)


class MLA(nn.Module):
    """Multi-head latent attention, naive form (spec 2.3), q_lora variant."""

    def __init__(self, cfg):
        super().__init__()
        D = cfg["hidden_size"]
        self.H = H = cfg["num_attention_heads"]
        self.dn = cfg["qk_nope_head_dim"]
        self.dr = cfg["qk_rope_head_dim"]
        self.dv = cfg["v_head_dim"]
        self.rkv = cfg["kv_lora_rank"]
        rq = cfg["q_lora_rank"]
        eps = cfg["rms_norm_eps"]
        dqk = self.dn + self.dr
        self.q_a_proj = nn.Linear(D, rq, bias=False)
        self.q_a_layernorm = RMSNorm(rq, eps)
        self.q_b_proj = nn.Linear(rq, H * dqk, bias=False)
        self.kv_a_proj_with_mqa = nn.Linear(D, self.rkv + self.dr, bias=False)
        self.kv_a_layernorm = RMSNorm(self.rkv, eps)
        self.kv_b_proj = nn.Linear(self.rkv, H * (self.dn + self.dv), bias=False)
        self.o_proj = nn.Linear(H * self.dv, D, bias=False)
        self.scale = softmax_scale(cfg)

    def forward(self, a, pos, rope, mask, cache=None):
        B, T, _ = a.shape
        H, dn, dr, dv = self.H, self.dn, self.dr, self.dv
        q = self.q_b_proj(self.q_a_layernorm(self.q_a_proj(a)))
        q = q.view(B, T, H, dn + dr).transpose(1, 2)              # [B,H,T,dqk]
        q_nope, q_pe = q[..., :dn], q[..., dn:]
        kv_a = self.kv_a_proj_with_mqa(a)
        c_kv, k_pe = kv_a[..., : self.rkv], kv_a[..., self.rkv:]
        kv = self.kv_b_proj(self.kv_a_layernorm(c_kv))
        kv = kv.view(B, T, H, dn + dv).transpose(1, 2)            # [B,H,T,dn+dv]
        k_nope, v = kv[..., :dn], kv[..., dn:]
        q_pe = rope(q_pe, pos)                                     # [B,H,T,dr]
        k_pe = rope(k_pe, pos)                                     # [B,T,dr] shared by heads
        k_pe = k_pe[:, None, :, :].expand(B, H, T, dr)
        qf = torch.cat((q_nope, q_pe), dim=-1)
        kf = torch.cat((k_nope, k_pe), dim=-1)
        if cache is not None:       # generation: keys/values of earlier positions
            if "k" in cache:
                kf = torch.cat((cache["k"], kf), dim=2)
                v = torch.cat((cache["v"], v), dim=2)
            cache["k"], cache["v"] = kf, v
        s = torch.matmul(qf, kf.transpose(-1, -2)).float() * self.scale
        s = s.masked_fill(mask, float("-inf"))
        p = torch.softmax(s, dim=-1).to(v.dtype)
        o = torch.matmul(p, v)                                     # [B,H,T,dv]
        o = o.transpose(1, 2).reshape(B, T, H * dv)
        return self.o_proj(o)


class MLP(nn.Module):
    """SwiGLU (spec 2.7)."""

    def __init__(self, D, I):
        super().__init__()
        self.gate_proj = nn.Linear(D, I, bias=False)
        self.up_proj = nn.Linear(D, I, bias=False)
        self.down_proj = nn.Linear(I, D, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Gate(nn.Module):
    def __init__(self, D, E):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(E, D))
        # Auxiliary-loss-free balancing bias: selection only, no gradient (spec 2.8).
        self.register_buffer("e_score_correction_bias", torch.zeros(E, dtype=torch.float32))


def route(u, bias, n_group, topk_group, top_k, norm_topk_prob, routed_scaling_factor):
    """V3 noaux_tc routing (spec 2.8). u: [N, E] fp32 gate logits.

    Returns (indices [N, K], weights [N, K]). Excluded groups are -inf (official code)."""
    N, E = u.shape
    s = torch.sigmoid(u)
    c = s + bias[None, :]
    if n_group > 1:
        g = c.view(N, n_group, E // n_group)
        gscore = g.topk(2, dim=-1).values.sum(-1)                 # sum of two largest
        gidx = gscore.topk(topk_group, dim=-1).indices            # [N, topk_group]
        gmask = torch.ones(N, n_group, dtype=torch.bool, device=u.device)
        gmask.scatter_(1, gidx, False)
        c = c.masked_fill(gmask[:, :, None].expand(N, n_group, E // n_group).reshape(N, E), float("-inf"))
    idx = c.topk(top_k, dim=-1).indices
    w = s.gather(1, idx)
    if top_k > 1 and norm_topk_prob:
        w = w / w.sum(-1, keepdim=True)
    w = w * routed_scaling_factor
    return idx, w


class MoE(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        D = cfg["hidden_size"]
        self.E = E = cfg["n_routed_experts"]
        I = cfg["moe_intermediate_size"]
        self.K = cfg["num_experts_per_tok"]
        self.n_group = cfg["n_group"]
        self.topk_group = cfg["topk_group"]
        self.norm = cfg["norm_topk_prob"]
        self.rsf = cfg["routed_scaling_factor"]
        self.gate = Gate(D, E)
        self.experts = nn.ModuleList([MLP(D, I) for _ in range(E)])
        self.shared_experts = MLP(D, cfg["n_shared_experts"] * I)
        self.last_load = None   # token counts per expert from the last forward

    def forward(self, x, valid=None):
        shp = x.shape
        xf = x.reshape(-1, shp[-1])
        u = F.linear(xf.float(), self.gate.weight.float())
        idx, w = route(u, self.gate.e_score_correction_bias, self.n_group, self.topk_group,
                       self.K, self.norm, self.rsf)
        N, K, E = xf.shape[0], self.K, self.E
        flat_idx = idx.reshape(-1)                                  # [N*K] expert of each slot
        tok = torch.arange(N, device=x.device).repeat_interleave(K)  # token of each slot
        flat_w = w.reshape(-1)
        with torch.no_grad():
            sel = flat_idx if valid is None else flat_idx[valid.reshape(-1).repeat_interleave(K)]
            self.last_load = torch.bincount(sel, minlength=E).float()
        # Group the slots by expert into a zero-padded [E, C, D] batch and run all
        # experts with three batched matmuls (same math as a loop over experts).
        order = torch.argsort(flat_idx, stable=True)
        e_sorted = flat_idx[order]
        counts = torch.bincount(flat_idx, minlength=E)
        starts = torch.cumsum(counts, 0) - counts
        rank = torch.arange(N * K, device=x.device) - starts[e_sorted]
        C = int(counts.max())
        t_sorted = tok[order]
        xp = xf.new_zeros(E, C, xf.shape[1])
        xp[e_sorted, rank] = xf[t_sorted]
        wg = torch.stack([ex.gate_proj.weight for ex in self.experts])   # [E, I, D]
        wu = torch.stack([ex.up_proj.weight for ex in self.experts])
        wd = torch.stack([ex.down_proj.weight for ex in self.experts])   # [E, D, I]
        hp = F.silu(torch.bmm(xp, wg.transpose(1, 2))) * torch.bmm(xp, wu.transpose(1, 2))
        yp = torch.bmm(hp, wd.transpose(1, 2))                           # [E, C, D]
        y = yp[e_sorted, rank].float() * flat_w[order, None]
        out = torch.zeros_like(xf, dtype=torch.float32)
        out.index_add_(0, t_sorted, y)
        out = out + self.shared_experts(xf).float()
        return out.to(x.dtype).view(shp)


class DecoderLayer(nn.Module):
    def __init__(self, cfg, l):
        super().__init__()
        D = cfg["hidden_size"]
        eps = cfg["rms_norm_eps"]
        self.input_layernorm = RMSNorm(D, eps)
        self.self_attn = MLA(cfg)
        self.post_attention_layernorm = RMSNorm(D, eps)
        self.is_moe = (cfg.get("n_routed_experts") is not None and l >= cfg["first_k_dense_replace"]
                       and l % cfg.get("moe_layer_freq", 1) == 0)
        self.mlp = MoE(cfg) if self.is_moe else MLP(D, cfg["intermediate_size"])

    def forward(self, h, pos, rope, mask, valid, cache=None):
        h = h + self.self_attn(self.input_layernorm(h), pos, rope, mask, cache)
        b = self.post_attention_layernorm(h)
        h = h + (self.mlp(b, valid) if self.is_moe else self.mlp(b))
        return h


class Inner(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg["vocab_size"], cfg["hidden_size"])
        self.layers = nn.ModuleList([DecoderLayer(cfg, l) for l in range(cfg["num_hidden_layers"])])
        self.norm = RMSNorm(cfg["hidden_size"], cfg["rms_norm_eps"])


class DeepseekV3ForCausalLM(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.model = Inner(cfg)
        self.lm_head = nn.Linear(cfg["hidden_size"], cfg["vocab_size"], bias=False)
        self.rope = Rotary(cfg)
        self.reset_parameters()

    def reset_parameters(self):
        std = self.cfg.get("initializer_range", 0.02)
        nl = self.cfg["num_hidden_layers"]
        for name, p in self.named_parameters():
            if p.dim() >= 2:
                s = std
                if name.endswith("o_proj.weight") or name.endswith("down_proj.weight"):
                    s = std / math.sqrt(2 * nl)
                nn.init.normal_(p, 0.0, s)
            else:
                nn.init.ones_(p)

    def moe_layers(self):
        return [l.mlp for l in self.model.layers if l.is_moe]

    def forward(self, ids, valid=None, pos0=0, caches=None):
        """ids: [B, T] long, at positions pos0 .. pos0+T-1. Returns fp32 logits [B, T, V].
        caches: None, or a list with one dict per layer (filled / extended in place)."""
        B, T = ids.shape
        pos = torch.arange(pos0, pos0 + T, device=ids.device)
        S = pos0 + T
        # query i (absolute pos0+i) sees keys j <= pos0+i (spec 2.3, general rule)
        mask = torch.arange(S, device=ids.device)[None, :] > pos[:, None]
        h = self.model.embed_tokens(ids)
        for l, layer in enumerate(self.model.layers):
            h = layer(h, pos, self.rope, mask, valid, None if caches is None else caches[l])
        h = self.model.norm(h)
        return self.lm_head(h).float()

    @torch.no_grad()
    def generate(self, prompts, max_new, eos_id):
        """Greedy decoding with a key/value cache. prompts: list of id lists, all of
        the same length (they are run as one batch). Returns the generated ids of
        each prompt, up to and including EOS. Ties go to the lowest id."""
        x = torch.tensor(prompts, dtype=torch.long)
        caches = [dict() for _ in self.model.layers]
        logits = self.forward(x, caches=caches)[:, -1]
        pos = x.shape[1]
        done = [False] * len(prompts)
        outs = [[] for _ in prompts]
        for _ in range(max_new):
            t = torch.argmax(logits, dim=-1)
            for i in range(len(prompts)):
                if not done[i]:
                    outs[i].append(int(t[i]))
                    done[i] = int(t[i]) == eos_id
            if all(done):
                break
            logits = self.forward(t[:, None], pos0=pos, caches=caches)[:, -1]
            pos += 1
        return outs
