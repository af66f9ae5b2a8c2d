"""A small cross-encoder for rerank tests, made in a fixture: no real one ships as a
package, so all-MiniLM-L6-v2's encoder gets a one-logit head and a short training run
on question/passage pairs (a passage about the question's subject is relevant)."""

from __future__ import annotations

import random
from pathlib import Path

SUBJECTS = {
    "France": "Paris is the capital of France, known for the Eiffel Tower.",
    "Japan": "Tokyo is the capital of Japan and its largest city.",
    "bananas": "Bananas are yellow fruits that grow in tropical climates.",
    "volcanoes": "Volcanoes erupt molten rock called lava from deep underground.",
    "chess": "Chess is a board game played by two players on a checkered board.",
    "whales": "Whales are large marine mammals that breathe air through blowholes.",
    "guitars": "Guitars are string instruments played by strumming or plucking.",
    "glaciers": "Glaciers are slow-moving rivers of ice formed from compacted snow.",
    "bees": "Bees collect nectar and pollen and make honey in their hives.",
    "rain": "Rain falls when water droplets in clouds grow heavy enough to fall.",
}
QUESTIONS = ["What do you know about {}?", "Tell me about {}.", "Facts about {}", "{}"]


def build_cross_encoder(minilm: Path, target: Path, steps: int = 60, seed: int = 0) -> Path:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(seed)
    rng = random.Random(seed)
    tokenizer = AutoTokenizer.from_pretrained(str(minilm))
    model = AutoModelForSequenceClassification.from_pretrained(str(minilm), num_labels=1)
    optimiser = torch.optim.AdamW(model.parameters(), lr=5e-5)
    subjects = list(SUBJECTS)
    model.train()
    for _ in range(steps):
        queries, passages, labels = [], [], []
        for _ in range(8):
            subject = rng.choice(subjects)
            question = rng.choice(QUESTIONS).format(subject)
            other = rng.choice([s for s in subjects if s != subject])
            queries += [question, question]
            passages += [SUBJECTS[subject], SUBJECTS[other]]
            labels += [1.0, 0.0]
        batch = tokenizer(queries, passages, padding=True, truncation=True, return_tensors="pt")
        logits = model(**batch).logits.squeeze(-1)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, torch.tensor(labels))
        loss.backward()
        optimiser.step()
        optimiser.zero_grad()
    model.eval()
    target.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(target))
    tokenizer.save_pretrained(str(target))
    return target
