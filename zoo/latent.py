"""The latent-variable family: autoencoder, VAE, beta-VAE and conditional VAE.

All four share one encoder/decoder layout (MLPs over flattened pixels) and the
same serving endpoints; they differ in the training objective.
"""
import math

import keras
import tensorflow as tf
import tensorflow_probability as tfp

from zoo import contract, likelihoods, seeding, steps

tfd = tfp.distributions


def _mlp(units, activation, out_units, name):
    stack = [keras.layers.Dense(u, activation=activation) for u in units]
    return keras.Sequential(stack + [keras.layers.Dense(out_units)], name=name)


class _LatentModel(steps.OneOptimizerModel):
    """Shared encoder, decoder, data handling and serving endpoints.

    ``describe`` and the card's serving note come from the subclass; every
    latent model trains one loss (``loss_terms``) with one optimizer.

    Args:
        image_shape: (H, W, C) of the images.
        latent_dim: size of the latent code z.
        hidden_units: widths of the encoder's hidden layers; the decoder mirrors them.
        activation: activation of the hidden layers.
        likelihood: pixel likelihood, "bernoulli" (binarized data) or
            "discretized_logistic" (8-bit data).
        num_classes: > 0 makes encoder and decoder label-conditioned.
    """

    family = "latent"

    def __init__(
        self,
        image_shape=(28, 28, 1),
        latent_dim=50,
        hidden_units=(512, 512),
        activation="relu",
        likelihood="bernoulli",
        num_classes=0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.image_shape = tuple(int(d) for d in image_shape)
        self.latent_dim = int(latent_dim)
        self.hidden_units = tuple(int(u) for u in hidden_units)
        self.activation = activation
        self.likelihood = likelihood
        self.num_classes = int(num_classes)
        self.pixel_likelihood = likelihoods.get(likelihood)
        self.num_pixels = math.prod(self.image_shape)
        self.encoder = _mlp(
            self.hidden_units, activation, self._encoder_outputs(), "encoder"
        )
        self.decoder = _mlp(
            tuple(reversed(self.hidden_units)),
            activation,
            self.num_pixels * self.pixel_likelihood.params_per_channel,
            "decoder",
        )
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.reconstruction_tracker = keras.metrics.Mean(name="reconstruction")
        self._create_state()
        self.build()

    def _create_state(self):
        """Subclasses create their extra trackers and generators here."""

    def _encoder_outputs(self):
        return self.latent_dim

    def build(self, input_shape=None):
        """Builds encoder and decoder; every shape is known from the config."""
        self.encoder.build((None, self.num_pixels + self.num_classes))
        self.decoder.build((None, self.latent_dim + self.num_classes))

    def get_config(self):
        config = super().get_config()
        config.update(
            image_shape=list(self.image_shape),
            latent_dim=self.latent_dim,
            hidden_units=list(self.hidden_units),
            activation=self.activation,
            likelihood=self.likelihood,
            num_classes=self.num_classes,
        )
        return config

    # ----------------------------------------------------------------- data
    def _with_labels(self, h, labels):
        if not self.num_classes:
            return h
        onehot = tf.one_hot(tf.cast(labels, tf.int32), self.num_classes)
        return tf.concat([h, onehot], axis=-1)

    # -------------------------------------------------------------- networks
    def encoder_output(self, x, labels=None):
        h = self.pixel_likelihood.network_input(x)
        h = tf.reshape(h, [-1, self.num_pixels])  # (B, H*W*C)
        # float32 under any precision policy: the TFP distributions built on it stay float32
        return tf.cast(self.encoder(self._with_labels(h, labels)), tf.float32)

    def decoder_params(self, z, labels=None):
        """Likelihood parameters for codes z: (B, H, W, C * P)."""
        out = tf.cast(self.decoder(self._with_labels(z, labels)), tf.float32)
        h, w, c = self.image_shape
        return tf.reshape(out, [-1, h, w, c * self.pixel_likelihood.params_per_channel])

    def call(self, inputs, training=False):
        """Mean reconstruction of the inputs, in the likelihood's pixel scale."""
        x, labels = self.unpack(inputs)
        mean, _ = self.encode_moments(x, labels)
        return self.pixel_likelihood.mean(self.decoder_params(mean, labels))

    def step_terms(self, data, training):
        x, labels = self.unpack(data)
        return self.loss_terms(x, labels, training=training)

    def describe(self):
        return (f"MLP encoder {list(self.hidden_units)} -> {self._code_text()} "
                f"{self.latent_dim}-d code; MLP decoder {list(reversed(self.hidden_units))} "
                f"-> {self.likelihood} pixels{self._prior_text()}.")

    # --------------------------------------------------------------- serving
    def _specs(self):
        return contract.specs(self.image_shape, self.latent_dim)

    def _image_outputs(self, params):
        lik = self.pixel_likelihood
        return {
            "images": lik.to_uint8(lik.mode(params)),
            "means": lik.to_uint8(lik.mean(params)),
        }

    def serve_encode(self, images, label=None):
        x = self.pixel_likelihood.from_uint8(images)
        mean, stddev = self.encode_moments(x, self.check_labels(label))
        return {"mean": mean, "stddev": stddev}

    def serve_decode(self, latents, label=None):
        return self._image_outputs(self.decoder_params(latents, self.check_labels(label)))

    def serve_reconstruct(self, images, seed, label=None):
        x = self.pixel_likelihood.from_uint8(images)
        label = self.check_labels(label)
        mean, stddev = self.encode_moments(x, label)
        z = mean + stddev * seeding.normal_rows(seed, [self.latent_dim])
        return self._image_outputs(self.decoder_params(z, label))

    def serving_endpoints(self, **options):
        """Returns {name: (function, input specs)}; the first is serving_default."""
        s = self._specs()
        cond = [s["label"]] if self.num_classes else []
        return {
            "reconstruct": (self.serve_reconstruct, [s["images"], s["seed"]] + cond),
            "encode": (self.serve_encode, [s["images"]] + cond),
            "decode": (self.serve_decode, [s["latents"]] + cond),
        }


@keras.saving.register_keras_serializable(package="genzoo")
class Autoencoder(_LatentModel):
    """Deterministic autoencoder: the baseline the VAE is compared with.

    Trained by maximum likelihood of x under the decoder given z = f(x), with
    no prior on z, so it encodes and reconstructs but cannot sample or score.
    ``encode`` returns the code as ``mean`` and a zero ``stddev``.

    References:
        Hinton & Salakhutdinov 2006, "Reducing the Dimensionality of Data with
        Neural Networks" (here shallow MLPs trained end to end with Adam).
    """

    serving_note = ("`encode` returns the code as `mean` (and a zero `stddev`), `decode` maps "
                    "codes to images; without a prior the model neither samples nor scores images.")

    def _code_text(self):
        return "a deterministic"

    def _prior_text(self):
        return ""

    def encode_moments(self, x, labels=None):
        code = self.encoder_output(x, labels)
        return code, tf.zeros_like(code)

    def loss_terms(self, x, labels=None, training=False):
        code = self.encoder_output(x, labels)
        params = self.decoder_params(code, labels)
        rec = -self.pixel_likelihood.distribution(params).log_prob(x)  # (B,)
        rec = tf.reduce_mean(rec)
        return {"loss": rec, "reconstruction": rec}

    @property
    def metrics(self):
        return [self.loss_tracker, self.reconstruction_tracker]


@keras.saving.register_keras_serializable(package="genzoo")
class VAE(_LatentModel):
    """Variational autoencoder with a diagonal-Gaussian posterior and N(0, I) prior.

    Maximises the ELBO, E_q[log p(x|z)] - beta * KL(q(z|x) || p(z)), with the
    reparameterized sample z = mu + sigma * eps and the analytic KL from TFP.
    Evaluation uses the importance-weighted bound with k samples.

    Args:
        beta: weight of the KL term (1 is the plain VAE).
        kl_warmup_steps: the KL weight rises linearly from 0 to beta over this
            many optimizer steps (Sønderby et al. 2016, "Ladder VAE", sec. 2.3);
            0 turns warm-up off. Evaluation always uses beta.
        **kwargs: see ``_LatentModel``.

    References:
        Kingma & Welling 2014, "Auto-Encoding Variational Bayes", eq. (3), (10).
        Burda et al. 2016, "Importance Weighted Autoencoders", eq. (8).
    """

    density = "bound"
    serving_note = ("`log_prob` returns the IWAE bound with the k recorded in "
                    "`genzoo/export_info.json` of the version folder, with fixed noise (so it is "
                    "deterministic).")

    def __init__(self, beta=1.0, kl_warmup_steps=0, **kwargs):
        self.beta = float(beta)
        self.kl_warmup_steps = int(kl_warmup_steps)
        super().__init__(**kwargs)

    def _create_state(self):
        self.kl_tracker = keras.metrics.Mean(name="kl")
        self.neg_elbo_tracker = keras.metrics.Mean(name="neg_elbo")
        self.seed_generator = keras.random.SeedGenerator(0)

    def _encoder_outputs(self):
        return 2 * self.latent_dim

    def _code_text(self):
        return "diagonal Gaussian q(z|x) over a"

    def _prior_text(self):
        return "; prior N(0, I)"

    objective_args = ("beta", "kl_warmup_steps")

    def get_config(self):
        config = super().get_config()
        config.update(beta=self.beta, kl_warmup_steps=self.kl_warmup_steps)
        return config

    @property
    def metrics(self):
        return [
            self.loss_tracker,
            self.reconstruction_tracker,
            self.kl_tracker,
            self.neg_elbo_tracker,
        ]

    def prior(self):
        """p(z) = N(0, I)."""
        zeros = tf.zeros([self.latent_dim])
        return tfd.MultivariateNormalDiag(loc=zeros, scale_diag=tf.ones_like(zeros))

    def encode_moments(self, x, labels=None):
        out = self.encoder_output(x, labels)
        mean, raw = tf.split(out, 2, axis=-1)
        return mean, tf.nn.softplus(raw) + 1e-4

    def posterior(self, x, labels=None):
        """q(z | x): a diagonal Gaussian with batch shape (B,)."""
        mean, stddev = self.encode_moments(x, labels)
        return tfd.MultivariateNormalDiag(loc=mean, scale_diag=stddev)

    def _kl_weight(self, training):
        if not training or not self.kl_warmup_steps:
            return self.beta
        step = tf.cast(self.optimizer.iterations, tf.float32)
        return self.beta * tf.minimum(1.0, (step + 1.0) / self.kl_warmup_steps)

    def _posterior_seed(self, training):
        """The seed of the loss's draw z ~ q(z|x).

        Training folds the optimizer step and the replica into the generator's
        draw (``seeding.training_seed``, as the GAN does), so replicas draw
        different noise and a resumed run does not replay its first steps'
        stateless seed. Evaluation keeps the generator's own counter, the
        seed (0, n) for its n-th draw, so a model card's test ELBO reproduces.
        """
        if training:
            seed = seeding.training_seed(self.seed_generator, self.optimizer.iterations)
            return tf.cast(seed % (2**31 - 1), tf.int32)  # TFP's stateless seeds are int32
        return tf.cast(self.seed_generator.next() % (2**31 - 1), tf.int32)

    def loss_terms(self, x, labels=None, training=False):
        q = self.posterior(x, labels)
        z = q.sample(seed=self._posterior_seed(training))  # reparameterized, (B, D)
        params = self.decoder_params(z, labels)
        rec = -self.pixel_likelihood.distribution(params).log_prob(x)  # (B,)
        kl = tfd.kl_divergence(q, self.prior())  # (B,)
        loss = tf.reduce_mean(rec + self._kl_weight(training) * kl)
        return {
            "loss": loss,
            "reconstruction": tf.reduce_mean(rec),
            "kl": tf.reduce_mean(kl),
            "neg_elbo": tf.reduce_mean(rec + kl),
        }

    def iwae_log_prob(self, x, labels=None, num_samples=1000, chunk_size=100, seed=(0, 0)):
        """The importance-weighted lower bound on log p(x), nats per image: (B,).

        log p(x) >= E[log (1/k) sum_i p(x, z_i) / q(z_i | x)], z_i ~ q(z | x).
        Samples are drawn ``chunk_size`` at a time and combined with a running
        logsumexp, so memory is bounded by chunk_size * B images for any k. The
        noise depends on ``seed`` only (shared by the rows), so a row's value
        does not depend on the rest of the batch.

        References:
            Burda et al. 2016, "Importance Weighted Autoencoders", eq. (8).
        """
        chunk_size = min(int(chunk_size), int(num_samples))
        if num_samples % chunk_size:
            raise ValueError(
                f"num_samples={num_samples} must be a multiple of chunk_size={chunk_size}"
            )
        seed = tf.cast(tf.convert_to_tensor(seed), tf.int64)
        q = self.posterior(x, labels)
        prior = self.prior()
        mean, stddev = q.mean(), q.stddev()
        batch = tf.shape(x)[0]
        if labels is not None:
            labels = tf.tile(labels, [chunk_size])  # (c * B,)

        def chunk(i, total):
            chunk_seed = tf.random.experimental.stateless_fold_in(seed, tf.cast(i, tf.int64))
            eps = tf.random.stateless_normal([chunk_size, 1, self.latent_dim], seed=chunk_seed)
            z = mean[None] + stddev[None] * eps  # (c, B, D)
            params = self.decoder_params(tf.reshape(z, [-1, self.latent_dim]), labels)
            params = tf.reshape(
                params, tf.concat([[chunk_size, batch], tf.shape(params)[1:]], 0)
            )  # (c, B, H, W, C * P)
            log_px = self.pixel_likelihood.distribution(params).log_prob(x[None])
            log_w = log_px + prior.log_prob(z) - q.log_prob(z)  # (c, B)
            return i + 1, tf.experimental.numpy.logaddexp(
                total, tf.reduce_logsumexp(log_w, axis=0)
            )

        _, total = tf.while_loop(
            lambda i, _: i < num_samples // chunk_size,
            chunk,
            (tf.constant(0), tf.fill([batch], -float("inf"))),
        )
        return total - math.log(num_samples)

    # --------------------------------------------------------------- serving
    def serve_sample(self, seed, label=None):
        label = self.check_labels(label)
        z_seed, x_seed = seeding.split_rows(seed, 2)
        z = seeding.normal_rows(z_seed, [self.latent_dim])
        params = self.decoder_params(z, label)
        lik = self.pixel_likelihood
        x = lik.sample(params, seeding.uniform_rows(x_seed, self.image_shape))
        return {
            "images": lik.to_uint8(x),
            "means": lik.to_uint8(lik.mean(params)),
            "latents": z,
        }

    def serve_log_prob(self, images, label=None, num_samples=100):
        x = self.pixel_likelihood.from_uint8(images)
        log_prob = self.iwae_log_prob(
            x, self.check_labels(label), num_samples=num_samples, chunk_size=50
        )
        return {
            "log_prob": log_prob,
            "bits_per_dim": likelihoods.bits_per_dim(-log_prob, self.image_shape),
        }

    def serving_endpoints(self, log_prob_samples=100, **options):
        """``sample`` first (serving_default), then the latent-model endpoints.

        Args:
            log_prob_samples: k of the IWAE bound that ``log_prob`` returns.
        """
        s = self._specs()
        cond = [s["label"]] if self.num_classes else []

        if self.num_classes:

            def log_prob(images, label):
                return self.serve_log_prob(images, label, log_prob_samples)

        else:

            def log_prob(images):
                return self.serve_log_prob(images, None, log_prob_samples)

        endpoints = {
            "sample": (self.serve_sample, [s["seed"]] + cond),
            "log_prob": (log_prob, [s["images"]] + cond),
        }
        endpoints.update(super().serving_endpoints())
        return endpoints


@keras.saving.register_keras_serializable(package="genzoo")
class BetaVAE(VAE):
    """beta-VAE: the VAE objective with the KL term weighted by beta > 1.

    References:
        Higgins et al. 2017, "beta-VAE: Learning Basic Visual Concepts with a
        Constrained Variational Framework", eq. (4).
    """

    def __init__(self, beta=4.0, **kwargs):
        super().__init__(beta=beta, **kwargs)


@keras.saving.register_keras_serializable(package="genzoo")
class ConditionalVAE(VAE):
    """Conditional VAE: encoder q(z | x, y) and decoder p(x | z, y) see the label.

    The label enters both networks as a one-hot vector concatenated to their
    inputs; the prior stays N(0, I) (the paper also allows p(z | y)).

    References:
        Sohn et al. 2015, "Learning Structured Output Representation using Deep
        Conditional Generative Models", eq. (4).
    """

    def __init__(self, num_classes=10, **kwargs):
        super().__init__(num_classes=num_classes, **kwargs)
