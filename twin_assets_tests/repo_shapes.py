"""Repository shapes that broke chunking on real public Python repositories, rebuilt small.

`MODEL_PY` has the shape of a GPT model file: small modules, then one large `class GPT(nn.Module)`
whose methods are themselves over an embedding model's budget (a long `__init__`, a long
`from_pretrained` with multi-line statements); the old chunker cut it into line windows that
split statements and left `class GPT(nn.Module):` on a chunk of its own. `TRAIN_PY` is a
top-level training script (no definitions, long `if`/`for` blocks). `URLS_TXT` is a plain list of
long links, the file the old chunker cut mid-URL.
"""

from __future__ import annotations

import json

MODEL_PY = '''"""
A small decoder-only language model in one file: attention, blocks, and the model with its
loading, optimiser and sampling helpers. Written for this project's tests as a stand-in for the
shape of real model files (one big class whose methods exceed an embedding model's budget).
"""

import math
from dataclasses import dataclass, field

import torch
import torch.nn as nn
from torch.nn import functional as F


class RMSNorm(nn.Module):
    """Root-mean-square normalisation with a learned scale and no bias."""

    def __init__(self, width, eps=1e-6):
        super().__init__()
        self.eps = eps
        self.scale = nn.Parameter(torch.ones(width))

    def forward(self, x):
        norm = x.pow(2).mean(dim=-1, keepdim=True).add(self.eps).rsqrt()
        return x * norm * self.scale


class SelfAttention(nn.Module):
    """Multi-head causal attention computed with the fused kernel."""

    def __init__(self, cfg):
        super().__init__()
        if cfg.width % cfg.heads:
            raise ValueError(f"width {cfg.width} is not a multiple of heads {cfg.heads}")
        self.heads = cfg.heads
        self.qkv = nn.Linear(cfg.width, 3 * cfg.width, bias=cfg.use_bias)
        self.out = nn.Linear(cfg.width, cfg.width, bias=cfg.use_bias)
        self.dropout = cfg.dropout

    def forward(self, x):
        batch, length, width = x.shape
        q, k, v = self.qkv(x).split(width, dim=2)
        shape = (batch, length, self.heads, width // self.heads)
        q, k, v = (t.view(*shape).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.dropout if self.training else 0.0, is_causal=True
        )
        return self.out(y.transpose(1, 2).reshape(batch, length, width))


class FeedForward(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.up = nn.Linear(cfg.width, 4 * cfg.width, bias=cfg.use_bias)
        self.down = nn.Linear(4 * cfg.width, cfg.width, bias=cfg.use_bias)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x):
        return self.drop(self.down(F.gelu(self.up(x))))


class Layer(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.norm_attn = RMSNorm(cfg.width)
        self.attn = SelfAttention(cfg)
        self.norm_ff = RMSNorm(cfg.width)
        self.ff = FeedForward(cfg)

    def forward(self, x):
        x = x + self.attn(self.norm_attn(x))
        return x + self.ff(self.norm_ff(x))


@dataclass
class GPTConfig:
    context: int = 512
    vocab: int = 32000
    depth: int = 8
    heads: int = 8
    width: int = 512
    dropout: float = 0.0
    use_bias: bool = False
    presets: dict = field(default_factory=dict)


class GPT(nn.Module):

    def __init__(self, cfg):
        super().__init__()
        if cfg.vocab <= 0 or cfg.context <= 0:
            raise ValueError("a model needs a vocabulary and a context length")
        self.cfg = cfg
        self.token_embedding = nn.Embedding(cfg.vocab, cfg.width)
        self.position_embedding = nn.Embedding(cfg.context, cfg.width)
        self.embedding_dropout = nn.Dropout(cfg.dropout)
        self.layers = nn.ModuleList([Layer(cfg) for _ in range(cfg.depth)])
        self.final_norm = RMSNorm(cfg.width)
        self.head = nn.Linear(cfg.width, cfg.vocab, bias=False)
        # the output projection shares its matrix with the token embedding: fewer parameters,
        # and rare tokens learn from both ends of the network
        self.head.weight = self.token_embedding.weight
        self.apply(self._init_weights)
        # residual projections start smaller, scaled by depth, so deep stacks stay stable
        for name, param in self.named_parameters():
            if name.endswith("out.weight") or name.endswith("down.weight"):
                torch.nn.init.normal_(param, mean=0.0, std=0.02 / math.sqrt(2 * cfg.depth))
        total = sum(p.numel() for p in self.parameters())
        embedding = self.position_embedding.weight.numel()
        print(
            f"model with {cfg.depth} layers, {cfg.heads} heads, width {cfg.width}: "
            f"{(total - embedding) / 1e6:.2f}M parameters without position embeddings"
        )

    def _init_weights(self, module):
        if isinstance(module, nn.Linear):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                torch.nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def forward(self, tokens, targets=None):
        batch, length = tokens.shape
        if length > self.cfg.context:
            raise ValueError(f"sequence of {length} tokens exceeds the context of {self.cfg.context}")
        positions = torch.arange(length, dtype=torch.long, device=tokens.device)
        x = self.embedding_dropout(self.token_embedding(tokens) + self.position_embedding(positions))
        for layer in self.layers:
            x = layer(x)
        x = self.final_norm(x)
        if targets is None:
            # generation only needs the last position's logits
            return self.head(x[:, [-1], :]), None
        logits = self.head(x)
        loss = F.cross_entropy(
            logits.view(-1, logits.size(-1)), targets.view(-1), ignore_index=-1
        )
        return logits, loss

    @classmethod
    def from_checkpoint(cls, path, preset=None, overrides=None):
        overrides = overrides or {}
        allowed = {"dropout", "context"}
        unknown = set(overrides) - allowed
        if unknown:
            raise ValueError(f"only {sorted(allowed)} may be overridden, not {sorted(unknown)}")
        state = torch.load(path, map_location="cpu")
        stored = dict(state["config"])
        presets = {
            "tiny": dict(depth=4, heads=4, width=256),
            "small": dict(depth=8, heads=8, width=512),
            "medium": dict(depth=16, heads=12, width=768),
            "large": dict(depth=24, heads=16, width=1024),
        }
        if preset is not None:
            if preset not in presets:
                raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(presets)}")
            stored.update(presets[preset])
        stored.update(overrides)
        model = cls(GPTConfig(**stored))
        weights = state["model"]
        # checkpoints written by compiled models prefix every key; strip it before loading
        prefix = "_orig_mod."
        weights = {
            (key[len(prefix):] if key.startswith(prefix) else key): value
            for key, value in weights.items()
        }
        missing, unexpected = model.load_state_dict(weights, strict=False)
        tied = {"head.weight"}
        if set(missing) - tied or unexpected:
            raise RuntimeError(
                f"checkpoint {path} does not match the model: missing {sorted(set(missing) - tied)}, "
                f"unexpected {sorted(unexpected)}"
            )
        if "context" in overrides and overrides["context"] < state["config"]["context"]:
            # a shorter context keeps the first positions of the learned table
            with torch.no_grad():
                model.position_embedding.weight.copy_(
                    weights["position_embedding.weight"][: overrides["context"]]
                )
        return model

    def optimizer(self, weight_decay, learning_rate, betas, device):
        decayed, plain = [], []
        for param in self.parameters():
            if not param.requires_grad:
                continue
            # matrices decay; vectors (norm scales, biases) do not
            (decayed if param.dim() >= 2 else plain).append(param)
        groups = [
            {"params": decayed, "weight_decay": weight_decay},
            {"params": plain, "weight_decay": 0.0},
        ]
        fused = device == "cuda"
        print(
            f"decayed tensors: {len(decayed)} ({sum(p.numel() for p in decayed):,} values), "
            f"plain tensors: {len(plain)} ({sum(p.numel() for p in plain):,} values), fused={fused}"
        )
        return torch.optim.AdamW(groups, lr=learning_rate, betas=betas, fused=fused)

    @torch.no_grad()
    def sample(self, tokens, new_tokens, temperature=1.0, top_k=None):
        for _ in range(new_tokens):
            window = tokens if tokens.size(1) <= self.cfg.context else tokens[:, -self.cfg.context:]
            logits, _ = self(window)
            logits = logits[:, -1, :] / max(temperature, 1e-5)
            if top_k is not None:
                kth = torch.topk(logits, min(top_k, logits.size(-1))).values[:, [-1]]
                logits[logits < kth] = -float("inf")
            probabilities = F.softmax(logits, dim=-1)
            following = torch.multinomial(probabilities, num_samples=1)
            tokens = torch.cat((tokens, following), dim=1)
        return tokens
'''

TRAIN_PY = '''"""Train a small model on a text file (run as a script, no functions)."""
import os
import time

out_dir = 'out'
eval_interval = 2000
log_interval = 1
eval_iters = 200
batch_size = 12
block_size = 1024
learning_rate = 6e-4
max_iters = 600000
weight_decay = 1e-1
settings = {name: value for name, value in dict(globals()).items() if isinstance(value, (int, float, str)) and not name.startswith('_')}
config = dict(settings)  # recorded with every checkpoint

if __name__ == "__main__":
    os.makedirs(out_dir, exist_ok=True)
    t0 = time.time()
    iter_num = 0
    best_val_loss = 1e9
    while True:
        # determine and set the learning rate for this iteration
        lr = learning_rate * min(1.0, iter_num / 2000)
        # evaluate the loss on train/val sets and write checkpoints
        if iter_num % eval_interval == 0:
            losses = {"train": 0.0, "val": 0.0}
            print(f"step {iter_num}: train loss {losses['train']:.4f}, val loss {losses['val']:.4f}")
            if losses['val'] < best_val_loss:
                best_val_loss = losses['val']
                checkpoint = {
                    'iter_num': iter_num,
                    'best_val_loss': best_val_loss,
                    'config': config,
                }
                print(f"saving checkpoint to {out_dir}")
        # timing and logging
        t1 = time.time()
        dt = t1 - t0
        t0 = t1
        if iter_num % log_interval == 0:
            print(f"iter {iter_num}: time {dt*1000:.2f}ms, learning rate {lr:.6f}, best {best_val_loss:.4f}")
        iter_num += 1
        # termination conditions
        if iter_num > max_iters:
            break
'''

URLS_TXT = "".join(
    f"https://data.example.org/collections/2024/experiment-{i:03d}/results/summary_table_{i:03d}.csv\n"
    for i in range(60)
)

REQUIREMENTS_TXT = "torch>=2.0\nnumpy\ntransformers\ndatasets\ntiktoken\nwandb\ntqdm\n"

README_MD = """# tinygpt

The simplest, fastest repository for training and finetuning medium-sized GPTs.

## install

Dependencies are listed in `requirements.txt`; install them with pip.

## quick start

Train a character-level model on a small text file, then sample from it.
"""


def notebook_json() -> str:
    """A notebook with a Markdown cell, two code cells (one with a magic), a raw cell and large
    outputs (a base64 image, a stream): only the cells' code and Markdown are the author's."""
    nb = {
        "cells": [
            {
                "cell_type": "markdown",
                "metadata": {},
                "source": ["# Sampling from a trained model\n", "We load the checkpoint and sample."],
            },
            {
                "cell_type": "code",
                "execution_count": 1,
                "metadata": {},
                "source": [
                    "%matplotlib inline\n",
                    "import torch\n",
                    "def sample(model, n):\n",
                    "    return model.generate(torch.zeros((1, 1), dtype=torch.long), n)\n",
                ],
                "outputs": [
                    {"output_type": "stream", "name": "stdout", "text": ["OUTPUT-STREAM-TEXT\n"]},
                    {
                        "output_type": "display_data",
                        "metadata": {},
                        "data": {"image/png": "iVBORw0KGgoAAAANSUhEUgAA" * 400},
                    },
                ],
            },
            {
                "cell_type": "code",
                "execution_count": 2,
                "metadata": {},
                "outputs": [],
                "source": "!pip install tiktoken\nprint(sample(None, 10))",
            },
            {"cell_type": "raw", "metadata": {}, "source": ["RAW-CELL-TEXT"]},
        ],
        "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    return json.dumps(nb, indent=1)


# Credential-like files, all with placeholder-looking or fake values: none may become data.
CREDENTIAL_FILES = {
    ".env": "OPENAI_API_KEY=sk-your-key-here\n",
    ".env.example": "WANDB_API_KEY=changeme\n",
    "config/.env.production": "DATABASE_URL=postgres://user:pass@db/prod\n",
    "config/credentials.json": '{"username": "YOUR_USERNAME", "password": "YOUR_PASSWORD"}\n',
    "config/gcp_credentials_dev.json": '{"token": "placeholder"}\n',
    "keys/server.pem": "-----BEGIN CERTIFICATE-----\nMIIBplaceholder\n-----END CERTIFICATE-----\n",
    "keys/server.key": "-----BEGIN PRIVATE KEY-----\nMIIEplaceholder\n-----END PRIVATE KEY-----\n",
    "keys/id_rsa": "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n",
    "keys/id_rsa.pub": "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ maya@laptop\n",
    "keys/client.p12": "not really a p12\n",
    "netrc/.netrc": "machine api.example.com login maya password hunter2\n",
    "secrets.toml": '[openai]\napi_key = "sk-..."\n',
    "deploy/project-4d2f1.json": json.dumps(
        {
            "type": "service_account",
            "project_id": "demo-project",
            "private_key_id": "0123abcd",
            "private_key": "-----BEGIN PRIVATE KEY-----\\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\\n-----END PRIVATE KEY-----\\n",
            "client_email": "trainer@demo-project.iam.gserviceaccount.com",
        }
    )
    + "\n",
}

# Not writing: an SVG drawing, tool configuration in dot-files and dot-directories.
NOT_WRITING_FILES = {
    "assets/diagram.svg": '<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect/></svg>\n',
    ".gitignore": "__pycache__/\n*.pt\nout/\n",
    ".github/workflows/ci.yml": "on: push\njobs:\n  test:\n    runs-on: ubuntu-latest\n",
    ".pre-commit-config.yaml": "repos: []\n",
}
