"""FlashAttention-2 forward and backward kernels written in Triton.

Dao 2023, FlashAttention-2 (arXiv 2307.08691): the forward walks key blocks inside one
program per (query block, head), keeping the running row max ``m``, row sum ``l`` and the
output accumulator in registers (online softmax), and writes the output and the row
log-sum-exp; the backward recomputes each tile from Q, K, V and the LSE, one program per
(key block, K/V head) for dK and dV and one per (query block, head) for dQ, so no
``Tq x Tk`` tensor ever exists and no atomics are needed.

Imported only where Triton is installed (``triton_flash`` checks first). Under
``TRITON_INTERPRET=1`` (set before this module is imported) the same kernels run on
CPU tensors through Triton's interpreter: that is how the test suite checks them on a
machine without a GPU.

What the kernels take, besides Q (B, H, Tq, D) and K, V (B, Hkv, Tk, D), contiguous:
- grouped-query K/V without repetition: query head h reads K/V head ``h // GROUP``;
- a head dim D of any size, padded inside the kernel to ``BLOCK_D`` (a power of two);
- ``CAUSAL`` with ``q_offset``: query i sits at position ``q_offset + i`` and may see
  keys at positions ``<= q_offset + i`` (``q_offset = Tk - Tq`` is bottom-right);
- ``HAS_PAD``: a key-padding row per batch, (B, Tk) uint8, 1 = a real key;
- ``BIAS_MODE`` 1: a relative bias table (H, R) float32, read at ``k - q + REL_ZERO``
  (ALiBi and T5 buckets depend on ``k - q`` only, so O(H * T) memory); 2: a dense bias
  (H, Tq, Tk) float32 for any other bias function;
- ``HAS_MASK``: a dense allowed-mask (Tq, Tk) uint8 (Longformer / BigBird patterns).
Scores are kept in base 2 (``exp2``, as the fused kernels do); the LSE is written in
natural log, float32. A row with no allowed key gets output 0 and LSE -inf.
"""

from __future__ import annotations

import triton
import triton.language as tl

LOG2E = 1.4426950408889634
LN2 = 0.6931471805599453


@triton.jit
def _dot(a, b, PRECISION: tl.constexpr, UPCAST: tl.constexpr):
    """a @ b accumulated in float32. UPCAST (interpreter only): the operands, already rounded to
    their 16-bit type, go in as float32; Triton 3.9's interpreter returns garbage for tl.dot of
    bfloat16 operands (measured), and a product of two 16-bit values is exact in float32."""
    if UPCAST:
        return tl.dot(a.to(tl.float32), b.to(tl.float32), input_precision="ieee")
    return tl.dot(a, b, input_precision=PRECISION)


@triton.jit
def _scores(q, k, offs_m, offs_n, q_offset, b, h, TQ, TK, scale_log2,
            pad_ptr, stride_pb, bias_ptr, stride_bh, stride_bq, stride_bk, REL_ZERO,
            mask_ptr, stride_mq, stride_mk,
            CAUSAL: tl.constexpr, HAS_PAD: tl.constexpr, BIAS_MODE: tl.constexpr, HAS_MASK: tl.constexpr,
            PRECISION: tl.constexpr, UPCAST: tl.constexpr):
    """Base-2 scores of one tile (BLOCK_M, BLOCK_N) from q (BLOCK_M, BLOCK_D) and k (BLOCK_N, BLOCK_D).

    -inf where a key is not allowed (masked, padded, or past Tk).
    """
    s = _dot(q, tl.trans(k), PRECISION, UPCAST) * scale_log2  # (BLOCK_M, BLOCK_N)
    q_pos = q_offset + offs_m
    in_range = (offs_m[:, None] < TQ) & (offs_n[None, :] < TK)
    allowed = offs_n[None, :] < TK
    if CAUSAL:
        allowed = allowed & (offs_n[None, :] <= q_pos[:, None])
    if HAS_PAD:
        real = tl.load(pad_ptr + b * stride_pb + offs_n, mask=offs_n < TK, other=0)
        allowed = allowed & (real[None, :] != 0)
    if HAS_MASK:
        keep = tl.load(mask_ptr + offs_m[:, None] * stride_mq + offs_n[None, :] * stride_mk, mask=in_range, other=0)
        allowed = allowed & (keep != 0)
    if BIAS_MODE == 1:
        rel = offs_n[None, :] - q_pos[:, None] + REL_ZERO
        s += tl.load(bias_ptr + h * stride_bh + rel * stride_bk, mask=in_range, other=0.0) * 1.4426950408889634
    if BIAS_MODE == 2:
        s += tl.load(bias_ptr + h * stride_bh + offs_m[:, None] * stride_bq + offs_n[None, :] * stride_bk,
                     mask=in_range, other=0.0) * 1.4426950408889634
    return tl.where(allowed, s, float("-inf"))


@triton.jit
def flash_fwd(Q, K, V, Out, LSE,
              stride_qb, stride_qh, stride_qt, stride_kb, stride_kh, stride_kt,
              H, GROUP, TQ, TK, D, q_offset, scale_log2,
              pad_ptr, stride_pb, bias_ptr, stride_bh, stride_bq, stride_bk, REL_ZERO,
              mask_ptr, stride_mq, stride_mk,
              CAUSAL: tl.constexpr, HAS_PAD: tl.constexpr, BIAS_MODE: tl.constexpr, HAS_MASK: tl.constexpr,
              PRECISION: tl.constexpr, UPCAST: tl.constexpr,
              BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):
    """One program: query rows [pid_m * BLOCK_M, +BLOCK_M) of one (batch, head) against every key.

    Out has Q's strides; LSE is (B, H, Tq) contiguous.
    """
    pid_m = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = pid_bh // H
    h = pid_bh % H
    hk = h // GROUP
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    offs_n0 = tl.arange(0, BLOCK_N)
    d_ok = offs_d[None, :] < D
    q_base = b * stride_qb + h * stride_qh
    kv_base = b * stride_kb + hk * stride_kh
    q = tl.load(Q + q_base + offs_m[:, None] * stride_qt + offs_d[None, :], mask=(offs_m[:, None] < TQ) & d_ok,
                other=0.0)
    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
    hi = TK
    if CAUSAL:  # keys past the block's last query are all masked: stop there
        hi = tl.maximum(tl.minimum(TK, q_offset + (pid_m + 1) * BLOCK_M), 0)
    for start_n in range(0, hi, BLOCK_N):
        offs_n = start_n + offs_n0
        kv_off = kv_base + offs_n[:, None] * stride_kt + offs_d[None, :]
        kv_ok = (offs_n[:, None] < TK) & d_ok
        k = tl.load(K + kv_off, mask=kv_ok, other=0.0)  # (BLOCK_N, BLOCK_D)
        s = _scores(q, k, offs_m, offs_n, q_offset, b, h, TQ, TK, scale_log2,
                    pad_ptr, stride_pb, bias_ptr, stride_bh, stride_bq, stride_bk, REL_ZERO,
                    mask_ptr, stride_mq, stride_mk, CAUSAL, HAS_PAD, BIAS_MODE, HAS_MASK, PRECISION, UPCAST)
        m_new = tl.maximum(m_i, tl.max(s, 1))
        # a row with every key so far masked keeps m = -inf: subtract 0 there, not -inf (exp2(nan))
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
        alpha = tl.exp2(m_i - m_safe)
        p = tl.exp2(s - m_safe[:, None])
        l_i = l_i * alpha + tl.sum(p, 1)
        v = tl.load(V + kv_off, mask=kv_ok, other=0.0)
        acc = acc * alpha[:, None] + _dot(p.to(v.dtype), v, PRECISION, UPCAST)
        m_i = m_new
    empty = l_i == 0.0
    out = acc / tl.where(empty, 1.0, l_i)[:, None]
    lse = tl.where(empty, float("-inf"), (m_i + tl.log2(tl.where(empty, 1.0, l_i))) * 0.6931471805599453)
    row_ok = offs_m < TQ
    tl.store(Out + q_base + offs_m[:, None] * stride_qt + offs_d[None, :], out.to(Out.dtype.element_ty),
             mask=row_ok[:, None] & d_ok)
    tl.store(LSE + pid_bh * TQ + offs_m, lse, mask=row_ok)


@triton.jit
def flash_bwd_dkdv(Q, K, V, DO, LSE2, DELTA, DK, DV,
                   stride_qb, stride_qh, stride_qt, stride_kb, stride_kh, stride_kt,
                   H, GROUP, TQ, TK, D, q_offset, scale_log2, scale,
                   pad_ptr, stride_pb, bias_ptr, stride_bh, stride_bq, stride_bk, REL_ZERO,
                   mask_ptr, stride_mq, stride_mk,
                   CAUSAL: tl.constexpr, HAS_PAD: tl.constexpr, BIAS_MODE: tl.constexpr, HAS_MASK: tl.constexpr,
                   PRECISION: tl.constexpr, UPCAST: tl.constexpr,
                   BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):
    """One program: dK, dV of keys [pid_n * BLOCK_N, +BLOCK_N) of one K/V head, summed over its query heads.

    DO has Q's strides, DK and DV K's; LSE2 (the LSE in base 2, +inf on rows with no key)
    and DELTA (rowsum(dO * O) minus the LSE's own gradient) are (B, H, Tq) float32.
    """
    pid_n = tl.program_id(0)
    pid_bk = tl.program_id(1)
    HKV = H // GROUP
    b = pid_bk // HKV
    hk = pid_bk % HKV
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    offs_m0 = tl.arange(0, BLOCK_M)
    d_ok = offs_d[None, :] < D
    kv_off = b * stride_kb + hk * stride_kh + offs_n[:, None] * stride_kt + offs_d[None, :]
    kv_ok = (offs_n[:, None] < TK) & d_ok
    k = tl.load(K + kv_off, mask=kv_ok, other=0.0)
    v = tl.load(V + kv_off, mask=kv_ok, other=0.0)
    dk = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)
    dv = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)
    lo = 0
    if CAUSAL:  # queries before the block's first key see none of it
        lo = (tl.maximum(pid_n * BLOCK_N - q_offset, 0) // BLOCK_M) * BLOCK_M
    for g in range(0, GROUP):
        h = hk * GROUP + g
        q_base = b * stride_qb + h * stride_qh
        row_base = (b * H + h) * TQ
        for start_m in range(lo, TQ, BLOCK_M):
            offs_m = start_m + offs_m0
            q_off = q_base + offs_m[:, None] * stride_qt + offs_d[None, :]
            q_ok = (offs_m[:, None] < TQ) & d_ok
            q = tl.load(Q + q_off, mask=q_ok, other=0.0)
            s = _scores(q, k, offs_m, offs_n, q_offset, b, h, TQ, TK, scale_log2,
                        pad_ptr, stride_pb, bias_ptr, stride_bh, stride_bq, stride_bk, REL_ZERO,
                        mask_ptr, stride_mq, stride_mk, CAUSAL, HAS_PAD, BIAS_MODE, HAS_MASK, PRECISION, UPCAST)
            lse2 = tl.load(LSE2 + row_base + offs_m, mask=offs_m < TQ, other=float("inf"))
            p = tl.exp2(s - lse2[:, None])  # (BLOCK_M, BLOCK_N), the softmax probabilities
            do = tl.load(DO + q_off, mask=q_ok, other=0.0)
            dv += _dot(tl.trans(p.to(do.dtype)), do, PRECISION, UPCAST)
            dp = _dot(do, tl.trans(v), PRECISION, UPCAST)
            delta = tl.load(DELTA + row_base + offs_m, mask=offs_m < TQ, other=0.0)
            ds = p * (dp - delta[:, None])  # dS = P * (dP - D)
            dk += _dot(tl.trans(ds.to(q.dtype)), q, PRECISION, UPCAST)
    tl.store(DK + kv_off, (dk * scale).to(DK.dtype.element_ty), mask=kv_ok)
    tl.store(DV + kv_off, dv.to(DV.dtype.element_ty), mask=kv_ok)


@triton.jit
def flash_bwd_dq(Q, K, V, DO, LSE2, DELTA, DQ,
                 stride_qb, stride_qh, stride_qt, stride_kb, stride_kh, stride_kt,
                 H, GROUP, TQ, TK, D, q_offset, scale_log2, scale,
                 pad_ptr, stride_pb, bias_ptr, stride_bh, stride_bq, stride_bk, REL_ZERO,
                 mask_ptr, stride_mq, stride_mk, DBIAS,
                 CAUSAL: tl.constexpr, HAS_PAD: tl.constexpr, BIAS_MODE: tl.constexpr, HAS_MASK: tl.constexpr,
                 PRECISION: tl.constexpr, UPCAST: tl.constexpr,
                 BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, BIAS_GRAD: tl.constexpr):
    """One program: dQ of query rows [pid_m * BLOCK_M, +BLOCK_M) of one (batch, head). DQ has Q's strides.

    BIAS_GRAD: also add dS (the bias's gradient, summed over the batch) into DBIAS, laid out like the
    bias (the relative table or the dense bias), with atomics: programs of different rows and batches
    meet on the same entries.
    """
    pid_m = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = pid_bh // H
    h = pid_bh % H
    hk = h // GROUP
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    offs_n0 = tl.arange(0, BLOCK_N)
    d_ok = offs_d[None, :] < D
    q_off = b * stride_qb + h * stride_qh + offs_m[:, None] * stride_qt + offs_d[None, :]
    q_ok = (offs_m[:, None] < TQ) & d_ok
    q = tl.load(Q + q_off, mask=q_ok, other=0.0)
    do = tl.load(DO + q_off, mask=q_ok, other=0.0)
    lse2 = tl.load(LSE2 + pid_bh * TQ + offs_m, mask=offs_m < TQ, other=float("inf"))
    delta = tl.load(DELTA + pid_bh * TQ + offs_m, mask=offs_m < TQ, other=0.0)
    kv_base = b * stride_kb + hk * stride_kh
    dq = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
    hi = TK
    if CAUSAL:
        hi = tl.maximum(tl.minimum(TK, q_offset + (pid_m + 1) * BLOCK_M), 0)
    for start_n in range(0, hi, BLOCK_N):
        offs_n = start_n + offs_n0
        kv_off = kv_base + offs_n[:, None] * stride_kt + offs_d[None, :]
        kv_ok = (offs_n[:, None] < TK) & d_ok
        k = tl.load(K + kv_off, mask=kv_ok, other=0.0)
        v = tl.load(V + kv_off, mask=kv_ok, other=0.0)
        s = _scores(q, k, offs_m, offs_n, q_offset, b, h, TQ, TK, scale_log2,
                    pad_ptr, stride_pb, bias_ptr, stride_bh, stride_bq, stride_bk, REL_ZERO,
                    mask_ptr, stride_mq, stride_mk, CAUSAL, HAS_PAD, BIAS_MODE, HAS_MASK, PRECISION, UPCAST)
        p = tl.exp2(s - lse2[:, None])
        dp = _dot(do, tl.trans(v), PRECISION, UPCAST)
        ds = p * (dp - delta[:, None])
        dq += _dot(ds.to(k.dtype), k, PRECISION, UPCAST)
        if BIAS_GRAD:
            in_range = (offs_m[:, None] < TQ) & (offs_n[None, :] < TK)
            if BIAS_MODE == 1:
                rel = offs_n[None, :] - (q_offset + offs_m)[:, None] + REL_ZERO
                tl.atomic_add(DBIAS + h * stride_bh + rel * stride_bk, ds, mask=in_range)
            else:
                tl.atomic_add(DBIAS + h * stride_bh + offs_m[:, None] * stride_bq + offs_n[None, :] * stride_bk, ds,
                              mask=in_range)
    tl.store(DQ + q_off, (dq * scale).to(DQ.dtype.element_ty), mask=q_ok)
