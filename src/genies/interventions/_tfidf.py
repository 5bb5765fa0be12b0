"""A weak supervisor that needs no language model: TF-IDF features and logistic regression.

Weak-to-strong experiments (docs/w2s.md) want a supervisor that is genuinely weaker than any
language model; a bag of words is the classic one. Each response is the text `prompt + "\\n" +
response` turned into TF-IDF features (word n-grams, vocabulary and IDF from the training texts);
a linear Bradley-Terry model without intercept is fitted on the feature differences of the
seeded training pairs, each pair in both orders, so a response's score is w . x and P(a beats b)
= sigmoid(w . (x_a - x_b)). The prompt's own words cancel in a difference; what is learnt is which
words make a response preferred. The fitted state is the vocabulary (JSON), the IDF and the
weights (safetensors): no pickle.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from genies.data.schema import Distribution, EvalSet
from genies.interventions.base import Intervention, Scorer
from genies.interventions.context import FitContext
from genies.interventions.hparams import hparam
from genies.interventions.registry import register
from genies.interventions.scores import Scores

if TYPE_CHECKING:
    from sklearn.feature_extraction.text import TfidfVectorizer

    from genies.models.base import LoadedModel


@dataclass(frozen=True)
class TfidfFit:
    vocabulary: tuple[str, ...]  # feature i is vocabulary[i]
    idf: np.ndarray  # [features]
    weight: np.ndarray  # [features], on TF-IDF features
    ngram_max: int
    n_train_pairs: int


def _text(prompt: str, response: str) -> str:
    return f"{prompt}\n{response}"


@register("tfidf", family="baseline",
          description="TF-IDF logistic regression on (prompt, response) text: a weak supervisor without a language model")
@dataclass
class Tfidf(Intervention[TfidfFit]):
    C: float = hparam(1.0, "inverse L2 strength of the logistic regression")
    max_features: int = hparam(20000, "largest vocabulary kept (most frequent n-grams)")
    ngram_max: int = hparam(2, "longest word n-gram")

    presets = {"paper": {}, "cpu": {}}
    uses_run_model = False  # it reads text only: the run's model is never loaded for it

    def _vectorizer(self, vocabulary: tuple[str, ...] | None = None) -> TfidfVectorizer:
        from sklearn.feature_extraction.text import TfidfVectorizer

        return TfidfVectorizer(ngram_range=(1, self.ngram_max), max_features=self.max_features,
                               vocabulary=dict(zip(vocabulary, range(len(vocabulary)))) if vocabulary else None,
                               sublinear_tf=True, dtype=np.float64)

    def fit(self, lm: LoadedModel | None, train: Distribution, ctx: FitContext) -> TfidfFit:
        from sklearn.linear_model import LogisticRegression

        pairs = train.train_pairs(ctx.seed)
        if not pairs:
            raise ValueError(f"{self.name}: source {train.id!r} has no training pairs")
        vectorizer = self._vectorizer()
        vectorizer.fit([_text(ex.prompt, r) for ex in train.train for r in ex.responses])
        a = vectorizer.transform([_text(p.prompt, p.preferred) for p in pairs])
        b = vectorizer.transform([_text(p.prompt, p.dispreferred) for p in pairs])
        x = (a - b).toarray()
        model = LogisticRegression(C=self.C, fit_intercept=False, max_iter=1000)
        model.fit(np.concatenate([x, -x]), np.r_[np.ones(len(pairs)), np.zeros(len(pairs))])
        vocabulary = tuple(sorted(vectorizer.vocabulary_, key=vectorizer.vocabulary_.__getitem__))
        return TfidfFit(vocabulary, vectorizer.idf_.astype(np.float64), model.coef_[0].astype(np.float64),
                        self.ngram_max, len(pairs))

    def scorer(self, lm: LoadedModel | None, fitted: TfidfFit, ctx: FitContext) -> Scorer:
        vectorizer = self._vectorizer(fitted.vocabulary)
        vectorizer.idf_ = fitted.idf

        def score(data: EvalSet) -> Scores:
            texts = [_text(q.prompt, r) for q in data.queries for r in q.responses]
            values = vectorizer.transform(texts) @ fitted.weight if texts else np.zeros(0)
            bounds = np.cumsum([0, *(len(q.responses) for q in data.queries)])
            return Scores.bradley_terry([values[s:e] for s, e in zip(bounds[:-1], bounds[1:])])
        return score
