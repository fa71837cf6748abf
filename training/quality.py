"""Sample-quality metrics on a zoo classifier's features, the same for every family.

FID and KID compare feature statistics of samples and test images; precision
and recall compare their k-NN manifolds; mode coverage is the class histogram
of samples as the classifier sees it. Every figure comes with the real-data
floor: the same metric between training and test images.
"""
import numpy as np
import tensorflow as tf

from zoo import saving


def fid(a, b):
    """Fréchet distance between Gaussians fitted to feature sets ``a`` and ``b`` (N, D).

    ||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)); the trace of the
    matrix square root is the sum of square roots of the eigenvalues of
    S_a^(1/2) S_b S_a^(1/2), which is symmetric.

    References:
        Heusel et al. 2017, "GANs Trained by a Two Time-Scale Update Rule
        Converge to a Local Nash Equilibrium", eq. (6).
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    w, v = np.linalg.eigh(s_a)
    root_a = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    cross = np.linalg.eigvalsh(root_a @ s_b @ root_a)
    trace_root = np.sqrt(np.clip(cross, 0, None)).sum()
    value = np.sum((mu_a - mu_b) ** 2) + np.trace(s_a) + np.trace(s_b) - 2 * trace_root
    return max(float(value), 0.0)  # a squared distance: below 0 only by rounding


def kid(a, b, subsets=100, subset_size=1000, seed=0):
    """Kernel Inception Distance: unbiased MMD^2 with k(x, y) = (x.y / d + 1)^3.

    Averaged over ``subsets`` random subsets of ``subset_size`` from each set;
    returns (mean, standard deviation over subsets).

    References:
        Bińkowski et al. 2018, "Demystifying MMD GANs", sec. 5 (KID).
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    d = a.shape[1]
    m = min(subset_size, len(a), len(b))
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(subsets):
        x = a[rng.choice(len(a), m, replace=False)]
        y = b[rng.choice(len(b), m, replace=False)]
        k_xx = (x @ x.T / d + 1) ** 3
        k_yy = (y @ y.T / d + 1) ** 3
        k_xy = (x @ y.T / d + 1) ** 3
        mmd = ((k_xx.sum() - np.trace(k_xx)) / (m * (m - 1))
               + (k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
               - 2 * k_xy.mean())
        values.append(mmd)
    return float(np.mean(values)), float(np.std(values))


def _distances(a, b, chunk=2000):
    """Yields (start, squared distances of a[start:start+chunk] to all of b)."""
    b_sq = np.sum(b * b, axis=1)
    for start in range(0, len(a), chunk):
        part = a[start:start + chunk]
        d = np.sum(part * part, axis=1)[:, None] + b_sq[None, :] - 2 * part @ b.T
        yield start, np.maximum(d, 0.0)


def _knn_radii(x, k):
    """Squared distance of each point of ``x`` to its k-th nearest other point."""
    radii = np.empty(len(x))
    for start, d in _distances(x, x):
        radii[start:start + len(d)] = np.partition(d, k, axis=1)[:, k]  # index 0 is the point itself
    return radii


def _coverage(points, centres, radii):
    """Share of ``points`` inside at least one ball (centre, radius)."""
    inside = np.zeros(len(points), bool)
    for start, d in _distances(points, centres):
        inside[start:start + len(d)] = np.any(d <= radii[None, :], axis=1)
    return float(inside.mean())


def precision_recall(real, fake, k=3):
    """Improved precision and recall: (share of fake in the real manifold, share of real in the fake one).

    A manifold is the union of balls around each point reaching its k-th
    nearest neighbour in the same set.

    References:
        Kynkäänniemi et al. 2019, "Improved Precision and Recall Metric for
        Assessing Generative Models", eq. (1)-(3), k = 3.
    """
    real, fake = np.asarray(real, np.float32), np.asarray(fake, np.float32)
    precision = _coverage(fake, real, _knn_radii(real, k))
    recall = _coverage(real, fake, _knn_radii(fake, k))
    return precision, recall


def mode_coverage(probabilities, min_share=0.0):
    """The class histogram of samples (argmax of the classifier) and how even it is.

    Returns a dict: ``histogram`` (share per class), ``kl_to_uniform``
    (KL(histogram || uniform) in nats; 0 when every class holds 1/K),
    ``classes_covered`` (classes holding more than ``min_share``) and
    ``min_class_share``.
    """
    probabilities = np.asarray(probabilities)
    classes = probabilities.shape[1]
    counts = np.bincount(np.argmax(probabilities, axis=1), minlength=classes)
    hist = counts / counts.sum()
    nonzero = hist[hist > 0]
    return {
        "histogram": [round(float(h), 4) for h in hist],
        "kl_to_uniform": float(np.sum(nonzero * np.log(nonzero * classes))),
        "classes_covered": int(np.sum(hist > min_share)),
        "min_class_share": float(hist.min()),
    }


def label_agreement(probabilities, requested):
    """How often the classifier's class (argmax) is the label a conditional model was asked for.

    Returns ``overall`` (the share of samples that agree) and ``per_class``
    (the share among the samples requested with each label, classes in order).
    """
    predicted = np.argmax(np.asarray(probabilities), axis=1)
    requested = np.asarray(requested)
    hits = predicted == requested
    classes = np.asarray(probabilities).shape[1]
    return {"overall": float(hits.mean()),
            "per_class": [round(float(hits[requested == c].mean()), 4) if np.any(requested == c)
                          else None for c in range(classes)]}


def sharpness(images, batch_size=1000):
    """Mean gradient energy of uint8 images: the average over pixels of |Sobel(x)|^2, x in [0, 1].

    A focus measure (the Tenengrad criterion; Krotkov 1987, "Focusing",
    IJCV 1(3)): blurring an edge over w pixels spreads its height over w
    gradients of 1/w each, so the energy falls like 1/w, whereas the mean
    absolute gradient (total variation) would not change. Compare it with the
    same figure of real images in the same pixel form.
    """
    total = 0.0
    for start in range(0, len(images), batch_size):
        x = tf.cast(images[start:start + batch_size], tf.float32) / 255.0
        total += float(tf.reduce_sum(tf.reduce_mean(tf.square(tf.image.sobel_edges(x)), [1, 2, 3, 4])))
    return total / len(images)


def zoo_classifier(dataset, version=None):
    """("classifier_<dataset>/<version>", the Keras model) of the zoo classifier of ``dataset``
    (the latest version by default)."""
    name = f"classifier_{dataset}"
    folder = saving.version_path(name, version)
    return f"{name}/{folder.name}", saving.load_keras(folder)


def embed(classifier, images, batch_size=500):
    """(features, class probabilities) of uint8 images through the classifier's endpoints."""
    @tf.function
    def run(batch):
        x = tf.cast(batch, tf.float32) / 255.0
        features = classifier.features(x)
        return features, tf.nn.softmax(classifier.head(features))

    feats, probs = [], []
    for start in range(0, len(images), batch_size):
        f, p = run(tf.constant(images[start:start + batch_size]))
        feats.append(f.numpy())
        probs.append(p.numpy())
    return np.concatenate(feats), np.concatenate(probs)


def compare(real_features, fake_features, fake_probabilities, k=3):
    """All metrics of one sample set against a reference set."""
    kid_mean, kid_std = kid(real_features, fake_features)
    precision, recall = precision_recall(real_features, fake_features, k)
    return {
        "fid": fid(real_features, fake_features),
        "kid": kid_mean,
        "kid_std": kid_std,
        "precision": precision,
        "recall": recall,
        "mode_coverage": mode_coverage(fake_probabilities),
        "samples": int(len(fake_features)),
        "reference": int(len(real_features)),
    }


def sample_images(model, count, batch_size=250, seed=0, num_classes=0, output="images"):
    """uint8 ``output`` of a model's ``serve_sample`` (labels cycling through classes)."""
    sample = tf.function(model.serve_sample)
    out = []
    for start in range(0, count, batch_size):
        n = min(batch_size, count - start)
        seeds = tf.stack([tf.fill([n], tf.constant(seed, tf.int64)),
                          tf.range(start, start + n, dtype=tf.int64)], 1)
        label = (model.conditions(tf.range(start, start + n, dtype=tf.int64) % num_classes)
                 if num_classes else [])
        out.append(sample(seeds, *label)[output].numpy())
    return np.concatenate(out)


def as_uint8(dataset_images, form):
    """Reference images in the form a model produces (binarized models emit 0/255)."""
    x = np.asarray(dataset_images, np.float32)
    if form == "binary":
        return (x * 255).round().astype(np.uint8)
    if form == "float11":
        return ((x + 1) * 127.5).round().clip(0, 255).astype(np.uint8)
    if form == "float01":
        return (x * 255).round().clip(0, 255).astype(np.uint8)
    return x.round().clip(0, 255).astype(np.uint8)  # uint8 form: 0..255 floats
