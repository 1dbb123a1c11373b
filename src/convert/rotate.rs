//! `tmac quantize --calibrate --rotate`: the residual stream turned by a random orthogonal Q
//! (signs, then Walsh-Hadamard blocks: `kernel::rotate`), as QuaRot and SpinQuant do, so that
//! the few channels with outsized weights and activations are spread over their block and a
//! group's codes cover its weights evenly. Q is folded into the weights: RMSNorm does not see
//! it (the mean of squares is unchanged) once its weights are folded into the matrices after
//! it, the matrices that read the stream take W Q, those that write it Q^T W. The embedding
//! and the head stay as they are (shared, when tied): the forward pass turns each embedding
//! and the last hidden state itself, two small transforms per token.

use crate::error::{Error, Result};
use crate::kernel::rotate::{block, rotate};
use crate::layout::linear::Linear;
use crate::model::weights::ROTATION;
use crate::model::Model;

/// Fold a rotation into the f32 model `m` (Compute::F32): its matrices, norms and output
/// biases change, and its forward pass turns the stream. Returns the vectors to store in place
/// of the file's: (name, values), the rotation's signs among them.
pub(crate) fn rotate_model(m: &mut Model) -> Result<Vec<(String, Vec<f32>)>> {
    let d = m.cfg.n_embd;
    let refuse = |why: &str| {
        Err(Error::unsupported(format!(
            "--rotate: {why} ({} model)",
            m.cfg.arch_name
        )))
    };
    if block(d).is_none() {
        return refuse(&format!("n_embd {d} is not a multiple of 16"));
    }
    if m.weights.rotation.is_some() {
        return refuse("the file is rotated already");
    }
    let norms_after = |l: &crate::model::weights::Layer| {
        l.extra.post_attn_norm.is_some() || l.extra.post_ffn_norm.is_some()
    };
    if m.weights
        .layers
        .iter()
        .any(|l| norms_after(l) || l.attn_sub_norm.is_some())
    {
        return refuse("norms on the matrices' outputs do not commute with the rotation");
    }
    let signs = random_signs(d);
    let mut out = Vec::new();
    for (i, ly) in m.weights.layers.iter_mut().enumerate() {
        for mat in [&mut ly.wq, &mut ly.wk, &mut ly.wv] {
            fold_into_input(mat, &ly.attn_norm, &signs);
        }
        for mat in [&mut ly.w_gate, &mut ly.w_up] {
            fold_into_input(mat, &ly.ffn_norm, &signs);
        }
        rotate_output(&mut ly.wo, &signs);
        rotate_output(&mut ly.w_down, &signs);
        for (norm, name) in [
            (&mut ly.attn_norm, "attn_norm"),
            (&mut ly.ffn_norm, "ffn_norm"),
        ] {
            norm.fill(1.0);
            out.push((format!("blk.{i}.{name}.weight"), norm.clone()));
        }
        if let Some(bo) = &mut ly.extra.bo {
            rotate(bo, &signs);
            out.push((format!("blk.{i}.attn_output.bias"), bo.clone()));
        }
    }
    out.push((ROTATION.to_string(), signs.clone()));
    m.weights.rotation = Some(signs);
    Ok(out)
}

/// W <- (W diag(norm)) Q: each row scaled by the norm's weights, then turned.
fn fold_into_input(mat: &mut Linear, norm: &[f32], signs: &[f32]) {
    let Linear::F32 { cols, w, .. } = mat else {
        unreachable!("rotation runs on an f32 model")
    };
    for row in w.chunks_exact_mut(*cols) {
        for (v, &n) in row.iter_mut().zip(norm) {
            *v *= n;
        }
        rotate(row, signs);
    }
}

/// W <- Q^T W: each column turned.
fn rotate_output(mat: &mut Linear, signs: &[f32]) {
    let Linear::F32 { rows, cols, w } = mat else {
        unreachable!("rotation runs on an f32 model")
    };
    let mut col = vec![0f32; *rows];
    for c in 0..*cols {
        for (r, v) in col.iter_mut().enumerate() {
            *v = w[r * *cols + c];
        }
        rotate(&mut col, signs);
        for (r, &v) in col.iter().enumerate() {
            w[r * *cols + c] = v;
        }
    }
}

/// n signs from a fixed xorshift seed: the same rotation for every file of a width.
fn random_signs(n: usize) -> Vec<f32> {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if x >> 63 == 0 {
                1.0
            } else {
                -1.0
            }
        })
        .collect()
}
