"""Neural Collaborative Filtering (He et al., WWW 2017): GMF, MLP and NeuMF with pluggable user towers.

Equations (paper numbering):

- GMF (eq. 9-10):  phi_GMF = p_u * q_i (element-wise);  y = sigmoid(h^T phi_GMF)
- MLP (eq. 5):     z_1 = [p_u; q_i];  z_l = ReLU(W_l z_{l-1} + b_l);  y = sigmoid(h^T z_L)
- NeuMF (eq. 11-12): y = sigmoid(h^T [phi_GMF; phi_MLP]) with separate embeddings per branch.

Defaults follow the paper: 8 predictive factors, MLP layers [64, 32, 16, 8] (so the MLP
embeddings are 64 / 2 = 32 wide and the last hidden layer has 8 units).

User side (``variant``), one encoder per branch, each producing a [B, d] user vector:

- ``id``:     p_u = E[u] (plain NCF). Users with no training interaction keep no trained row;
              ``fill_untrained_users`` gives them the mean trained vector.
- ``init``:   p_u = P r_u + E[u] with E initialised to zero, i.e. the user embedding starts at a
              learnt projection of the representation r_u and may move away from it per user;
              users never trained keep exactly P r_u.
- ``concat``: p_u = W [E[u]; r_u] (representation concatenated to the ID embedding).
- ``rep``:    p_u = P r_u only, so users unseen in training are scored from their history.

r_u is a fixed (not trained) buffer [n_users, D]. Items: an ID embedding per branch, or, when
``item_vectors`` x_i (e.g. embed-init vectors of the item text) are given, q_i = P x_i + E[i]
with E initialised to zero (the item-side twin of ``init``).
"""

from __future__ import annotations

import torch
from torch import nn

MODELS = ("gmf", "mlp", "neumf")
VARIANTS = ("id", "init", "concat", "rep")


class UserTower(nn.Module):
    """Maps user indices [B] to user vectors [B, dim] according to ``variant``."""

    def __init__(self, n_users: int, dim: int, variant: str, rep_dim: int):
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"unknown user variant {variant!r}; available: {', '.join(VARIANTS)}")
        if variant != "id" and rep_dim < 1:
            raise ValueError(f"variant {variant!r} needs user representations (rep_dim >= 1)")
        self.variant = variant
        self.embedding: nn.Embedding | None = None
        self.proj: nn.Linear | None = None
        if variant in ("id", "concat"):
            self.embedding = nn.Embedding(n_users, dim)
            nn.init.normal_(self.embedding.weight, std=0.01)  # paper: N(0, 0.01)
        if variant == "init":
            self.embedding = nn.Embedding(n_users, dim)
            nn.init.zeros_(self.embedding.weight)
        if variant in ("init", "rep"):
            self.proj = nn.Linear(rep_dim, dim)
        if variant == "concat":
            self.proj = nn.Linear(dim + rep_dim, dim)

    def forward(self, users: torch.Tensor, reps: torch.Tensor | None) -> torch.Tensor:
        if self.variant == "id":
            return self.embedding(users)  # [B, d]
        r = reps[users]  # [B, D]
        if self.variant == "rep":
            return self.proj(r)
        if self.variant == "init":
            return self.proj(r) + self.embedding(users)
        return self.proj(torch.cat([self.embedding(users), r], dim=-1))  # concat


class ItemTower(nn.Module):
    """Maps item indices [B] (or [B, C]) to item vectors [..., dim]: ID embedding, maybe text-initialised."""

    def __init__(self, n_items: int, dim: int, text_dim: int):
        super().__init__()
        self.embedding = nn.Embedding(n_items, dim)
        self.proj: nn.Linear | None = None
        if text_dim:
            nn.init.zeros_(self.embedding.weight)
            self.proj = nn.Linear(text_dim, dim)
        else:
            nn.init.normal_(self.embedding.weight, std=0.01)  # paper: N(0, 0.01)

    def forward(self, items: torch.Tensor, item_vectors: torch.Tensor | None) -> torch.Tensor:
        if self.proj is None:
            return self.embedding(items)
        return self.proj(item_vectors[items]) + self.embedding(items)


class NCF(nn.Module):
    """GMF / MLP / NeuMF scoring (user, item) pairs; ``forward`` returns logits (sigmoid in the loss)."""

    def __init__(
        self,
        n_users: int,
        n_items: int,
        *,
        model: str = "neumf",
        variant: str = "id",
        factors: int = 8,
        mlp_layers: tuple[int, ...] = (64, 32, 16, 8),
        reps: torch.Tensor | None = None,
        item_vectors: torch.Tensor | None = None,
    ):
        super().__init__()
        if model not in MODELS:
            raise ValueError(f"unknown NCF model {model!r}; available: {', '.join(MODELS)}")
        if len(mlp_layers) < 1 or mlp_layers[0] % 2:
            raise ValueError(f"mlp_layers[0] must be even (user and item halves), got {mlp_layers}")
        self.model_name = model
        self.variant = variant
        rep_dim = 0 if reps is None else int(reps.shape[1])
        if reps is not None:
            self.register_buffer("reps", reps.float(), persistent=True)  # [U, D]
        else:
            self.reps = None
        text_dim = 0 if item_vectors is None else int(item_vectors.shape[1])
        if item_vectors is not None:
            if item_vectors.shape[0] != n_items:
                raise ValueError(f"item_vectors has {item_vectors.shape[0]} rows for {n_items} items")
            self.register_buffer("item_vectors", item_vectors.float(), persistent=True)  # [I, E]
        else:
            self.item_vectors = None
        self.use_gmf = model in ("gmf", "neumf")
        self.use_mlp = model in ("mlp", "neumf")
        out_dim = 0
        if self.use_gmf:
            self.gmf_user = UserTower(n_users, factors, variant, rep_dim)
            self.gmf_item = ItemTower(n_items, factors, text_dim)
            out_dim += factors
        if self.use_mlp:
            half = mlp_layers[0] // 2
            self.mlp_user = UserTower(n_users, half, variant, rep_dim)
            self.mlp_item = ItemTower(n_items, half, text_dim)
            layers: list[nn.Module] = []
            for d_in, d_out in zip(mlp_layers[:-1], mlp_layers[1:], strict=False):
                lin = nn.Linear(d_in, d_out)
                nn.init.xavier_uniform_(lin.weight)  # paper: Glorot for the MLP layers
                nn.init.zeros_(lin.bias)
                layers += [lin, nn.ReLU()]
            self.mlp = nn.Sequential(*layers)
            out_dim += mlp_layers[-1]
        self.predict = nn.Linear(out_dim, 1)  # h in eq. 10 / 12

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """users, items: [B] int64 -> logits [B]."""
        parts = []
        if self.use_gmf:
            parts.append(
                self.gmf_user(users, self.reps) * self.gmf_item(items, self.item_vectors)
            )  # [B, f]  eq. 9
        if self.use_mlp:
            z = torch.cat(
                [self.mlp_user(users, self.reps), self.mlp_item(items, self.item_vectors)], dim=-1
            )  # [B, 64]
            parts.append(self.mlp(z))  # [B, 8]  eq. 5
        return self.predict(torch.cat(parts, dim=-1)).squeeze(-1)  # eq. 12

    @torch.no_grad()
    def score(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """users [B], items [B, C] -> logits [B, C]."""
        b, c = items.shape
        flat_users = users[:, None].expand(b, c).reshape(-1)
        return self.forward(flat_users, items.reshape(-1)).view(b, c)

    @torch.no_grad()
    def fill_untrained_users(self, untrained: torch.Tensor) -> None:
        """Give users without training interactions the mean trained ID vector (variants id, concat).

        untrained: [U] bool. ``init`` leaves them at zero (their vector is P r_u); ``rep`` has no IDs.
        """
        if self.variant not in ("id", "concat") or not bool(untrained.any()) or bool(untrained.all()):
            return
        for tower in (getattr(self, "gmf_user", None), getattr(self, "mlp_user", None)):
            if tower is None:
                continue
            w = tower.embedding.weight
            w[untrained] = w[~untrained].mean(dim=0)
