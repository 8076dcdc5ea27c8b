"""A triplet-trained projection head: a small network that reshapes an embedding space.

The face model was trained on celebrities; a photo library has its own people, lighting and
cameras. The faces the user labeled say which directions of the space separate *these*
people. A projection head (input → hidden → ReLU → output → L2-normalise) trained with a
triplet loss on those labels pulls each person's faces together and pushes other people's
away. Its output is a new embedding space, ``proj/<checkpoint>``, stored beside the source
space in the catalog (``embeddings`` table, the derived-space vectors) with its own usearch
index. Suggestions, find-more, clustering and the one assignment loop
(:func:`facelab.people.assign.assign`) all work in such a space; :func:`reassign` is that
loop with the new space's own thresholds.

The package, pure parts first (``from facelab.research import train; train.fit`` style
names are all re-exported here):

* :mod:`.data` — :func:`split_by_person` (train/validation people, seeded, so validation
  people are never seen in training), :func:`sample_pairs`, :func:`pk_batches` (P people x
  K faces), :func:`make_nuisance_faces` (a synthetic space a head can improve).
* :mod:`.evaluation` — :func:`verification` (ROC AUC, EER, TAR@FAR on sampled pairs, never
  an n x n matrix), :func:`derive_thresholds` (assignment thresholds of a new space from its
  impostor score distribution), :func:`identification` (rank-1, the question assignment
  asks) and :func:`evaluate_embeddings` (all of them + clustering BCubed F).
* :mod:`.losses` — the network and :func:`triplet_loss` with batch-hard, semi-hard or random
  mining; torch is imported on first use.
* :mod:`.head` — :class:`TripletHead`, an estimator: ``fit(X, y)`` splits by person, trains
  on P x K batches, records per-epoch metrics and survives Ctrl-C (it stops at the last
  finished epoch); ``transform(X)`` projects; ``save`` / ``load`` write and read checkpoints
  (weights, optimizer state, metadata); a loaded head's ``fit`` resumes where it stopped.
* :mod:`.embed` — the catalog side of a head's space: :func:`proj_space`,
  :func:`checkpoint_path`, :func:`reembed` (every face of the source space into
  ``proj/<name>`` + its index) and :func:`reassign`.
* :mod:`.run` — :func:`labeled_faces` (the faces people labeled, ``naming.HUMAN_SOURCES``),
  :func:`train` (fit on them and save ``<workspace>/models/proj/<name>.pt``),
  :func:`evaluate_head` (before/after) and :func:`run_training` (``facelab train``).

Design decisions (the measurements behind them are in the module constants and in
``notebooks/05_triplet_training.ipynb``):

* **Distance.** Triplets compare cosine distances ``1 - cos`` of unit vectors (the metric of
  every index and threshold in facelab). ``metric="euclidean"`` uses the chord length
  ``sqrt(2 - 2 cos)`` instead. FaceNet's margin 0.2 was on the *squared* chord, which is
  ``2 (1 - cos)``: the same margin is 0.1 in cosine distance.
* **Residual head.** The original head (random initialisation) starts from a scrambled
  space and must relearn from a few hundred people what the face model learnt from
  millions; on lfw-dev it ends far below the input space on people it never saw. With
  ``residual=True`` (default) the output is ``normalise(S x + MLP(x))`` where ``S`` starts
  as the identity (or, for input dim != output dim, the top principal directions of the
  training faces) and the MLP's last layer starts at zero: epoch 0 *is* the input space,
  and training moves away from it only as far as the labels justify.
* **torch is optional** (``pip install 'facelab[train]'``): it is imported inside the
  functions that need it, so facelab imports without it.

What lfw-dev's dlib space showed (824 people seen twice or more, 20 % of them held out
unseen, half the faces of each training person with 4+ faces held out; two person splits):
the head does **not** help. dlib was trained on millions of faces and already separates
these people (unseen: ROC AUC 0.9997, rank-1 0.99); the few thousand labels teach little,
and the original recipe (plain MLP, margin 0.2, 20 epochs, >= 5 faces) makes unseen people
worse (TAR@FAR=1e-3 0.95 -> 0.80, rank-1 0.99 -> 0.96, BCubed F 0.85 -> 0.82). The defaults
here are the configuration that does least harm (residual, batch-hard, margin 0.02, 10
epochs: every metric within 0.01 of the input space, TAR@FAR=1e-3 -0.006). Semi-hard
mining hurt most (TAR 0.91), random least. A head earns its keep where the source space has
structure the labels can correct — the synthetic nuisance of :func:`make_nuisance_faces`
(unseen-people AUC 0.75 -> 0.9+) — so measure with notebook 05 before trusting one.
"""

from __future__ import annotations

from facelab.research.train.data import (
    N_PAIRS,
    Split,
    make_nuisance_faces,
    pk_batches,
    sample_pairs,
    split_by_person,
)
from facelab.research.train.embed import (
    MODELS_DIR,
    SPACE_PREFIX,
    checkpoint_path,
    proj_space,
    reassign,
    reembed,
)
from facelab.research.train.evaluation import (
    FAR_AUTO,
    FAR_REPORT,
    FAR_SUGGEST,
    N_THRESHOLD_PAIRS,
    derive_thresholds,
    evaluate_embeddings,
    identification,
    verification,
)
from facelab.research.train.head import (
    CHECKPOINT_VERSION,
    REEMBED_CHUNK,
    EpochStats,
    TripletHead,
    load_checkpoint,
)
from facelab.research.train.losses import DISTANCES, MININGS, triplet_loss
from facelab.research.train.run import (
    TrainResult,
    evaluate_head,
    format_summary,
    labeled_faces,
    run_training,
    train,
)

__all__ = [
    "CHECKPOINT_VERSION",
    "DISTANCES",
    "FAR_AUTO",
    "FAR_REPORT",
    "FAR_SUGGEST",
    "MININGS",
    "MODELS_DIR",
    "N_PAIRS",
    "N_THRESHOLD_PAIRS",
    "REEMBED_CHUNK",
    "SPACE_PREFIX",
    "EpochStats",
    "Split",
    "TrainResult",
    "TripletHead",
    "checkpoint_path",
    "derive_thresholds",
    "evaluate_embeddings",
    "evaluate_head",
    "format_summary",
    "identification",
    "labeled_faces",
    "load_checkpoint",
    "make_nuisance_faces",
    "pk_batches",
    "proj_space",
    "reassign",
    "reembed",
    "run_training",
    "sample_pairs",
    "split_by_person",
    "train",
    "triplet_loss",
    "verification",
]
