"""CTC prefix beam search, as `keras.ops.ctc_decode(strategy="beam_search")` computes it.

Keras's rule, reproduced for its numbers and its choice among equal scores: the inputs go through
`log_softmax`; each beam entry is a label path with a flag saying whether its last step was the
blank (`mask_index`). A step extends every entry by every class: the blank keeps the path (flag
set), a label equal to the path's last one after a non-blank step keeps it too (a repeat, flag
clear), any other label is appended. Entries with equal paths are merged (log-sum-exp of their
scores, separately for blank-ended and label-ended ones) and the `beam_width` paths with the best
total survive, each as two entries. Ties go the way Keras's sorts leave them: labels are numbered
with the class axis reversed, distinct paths are ordered by a hash, and of equal totals the later
one wins. Steps past a sequence's
length change nothing.
"""

import torch

_PAD = -1
_HASH_BASE = 2654435769


def _merged(inverse: torch.Tensor, count: int, scores: torch.Tensor) -> torch.Tensor:
    """log(sum(exp(score))) of the entries that share each unique path (-inf where none)."""
    top = scores.max()
    sums = torch.zeros(count, dtype=scores.dtype, device=scores.device).index_add_(0, inverse, torch.exp(scores - top))
    return torch.log(sums) + top


def _unique(paths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Distinct paths, and each entry's index among them. Keras's torch backend orders them by a
    polynomial hash of the path (sum of (label + 1) * 2654435769**position, padding counting 0,
    wrapping in int64),
    equal paths merging where they sit next to each other in that order; ties follow it."""
    powers = _HASH_BASE ** torch.arange(paths.shape[1], dtype=torch.int64, device=paths.device)
    hashes = ((paths.to(torch.int64) + 1) * powers).sum(dim=1)
    order = torch.argsort(hashes, stable=True)
    ordered, ordered_hashes = paths[order], hashes[order]
    repeats = (ordered_hashes[1:] == ordered_hashes[:-1]) & (ordered[1:] == ordered[:-1]).all(dim=1)
    starts = torch.cat([torch.ones(1, dtype=torch.bool, device=paths.device), ~repeats])
    inverse = torch.empty_like(order)
    inverse[order] = torch.cumsum(starts.to(torch.int64), dim=0) - 1
    return ordered[starts], inverse


def _prune(paths, scores, blank_ended, beam_width):
    unique, inverse = _unique(paths)
    count = unique.shape[0]
    label_scores = _merged(inverse, count, torch.where(blank_ended, -torch.inf, scores))
    blank_scores = _merged(inverse, count, torch.where(blank_ended, scores, -torch.inf))
    keep = torch.argsort(torch.logaddexp(label_scores, blank_scores), stable=True)[-beam_width:]
    if keep.numel() < beam_width:  # fewer distinct paths than the beam: Keras fills with empty ones that score -inf
        missing = beam_width - keep.numel()
        unique = torch.cat([unique, torch.full((1, unique.shape[1]), _PAD, dtype=unique.dtype, device=unique.device)])
        minus_inf = torch.tensor([-torch.inf], dtype=scores.dtype, device=scores.device)
        label_scores, blank_scores = torch.cat([label_scores, minus_inf]), torch.cat([blank_scores, minus_inf])
        keep = torch.cat([torch.full((missing,), count, dtype=keep.dtype, device=keep.device), keep])
    kept = unique[keep]
    flags = torch.cat([torch.zeros(beam_width, dtype=torch.bool), torch.ones(beam_width, dtype=torch.bool)]).to(paths.device)
    return torch.cat([kept, kept]), torch.cat([label_scores[keep], blank_scores[keep]]), flags


def _extend(paths, scores, blank_ended, step_scores, blank):
    entries, length = paths.shape
    classes = step_scores.shape[0]
    paths = paths.repeat_interleave(classes, dim=0)
    scores = scores.repeat_interleave(classes) + step_scores.repeat(entries)
    was_blank = blank_ended.repeat_interleave(classes)
    is_pad = paths == _PAD
    tail = torch.where(is_pad.any(dim=1), is_pad.int().argmax(dim=1), torch.full((paths.shape[0],), length, device=paths.device))
    rows = torch.arange(paths.shape[0], device=paths.device)
    last = torch.where(tail > 0, paths[rows, (tail - 1).clamp(min=0)], _PAD)
    label = torch.arange(classes, device=paths.device).repeat(entries)
    label = torch.where(label == blank, _PAD, label)
    now_blank = label == _PAD
    label = torch.where(~was_blank & (last == label), _PAD, label)  # a repeat merges into the path
    appends = (label != _PAD) & (tail < length)
    paths = paths.clone()
    paths[rows[appends], tail[appends]] = label[appends]
    return paths, scores, now_blank


def _decode_one(log_probs: torch.Tensor, length: int, beam_width: int, top_paths: int, blank: int):
    steps, classes = log_probs.shape
    entries = 2 * beam_width
    first = min(classes, beam_width)
    best = torch.argsort(log_probs[0], stable=True)[-first:]
    paths = torch.full((entries, steps), _PAD, dtype=torch.int64, device=log_probs.device)
    paths[:first, 0] = torch.where(best == blank, _PAD, best)
    scores = torch.full((entries,), -torch.inf, dtype=log_probs.dtype, device=log_probs.device)
    scores[:first] = log_probs[0, best]
    blank_ended = paths[:, 0] == _PAD
    for t in range(1, min(length, steps)):
        paths, scores, blank_ended = _extend(paths, scores, blank_ended, log_probs[t], blank)
        paths, scores, blank_ended = _prune(paths, scores, blank_ended, beam_width)
    unique, inverse = _unique(paths)
    totals = _merged(inverse, unique.shape[0], scores)
    if unique.shape[0] < top_paths:
        missing = top_paths - unique.shape[0]
        unique = torch.cat([torch.full((missing, steps), _PAD, dtype=unique.dtype, device=unique.device), unique])
        totals = torch.cat([torch.full((missing,), -torch.inf, dtype=totals.dtype, device=totals.device), totals])
    chosen = torch.argsort(totals, stable=True)[-top_paths:].flip(0)
    return unique[chosen], totals[chosen]


def ctc_beam_search(inputs: torch.Tensor, lengths: torch.Tensor, beam_width: int, top_paths: int, blank: int):
    """(paths [top_paths, batch, steps] int32 padded with -1, log-probabilities [batch, top_paths])."""
    batch, steps, classes = inputs.shape
    # Keras orders paths with the class axis reversed; work in that order, map back at the end.
    log_probs = torch.log_softmax(inputs, dim=-1).flip(-1)
    flipped_blank = classes - 1 - blank
    decoded, scores = [], []
    for row in range(batch):
        paths, totals = _decode_one(log_probs[row], int(lengths[row]), beam_width, top_paths, flipped_blank)
        decoded.append(torch.where(paths == _PAD, _PAD, classes - 1 - paths))
        scores.append(totals)
    return torch.stack(decoded, dim=1).to(torch.int32), torch.stack(scores)
