"""The ``kmeans-limit`` command line."""

from __future__ import annotations

import click

from .datasets import load_faithful
from .inference import kmeans_objective, sample_from, sample_prior


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="kmeans-limit")
def main() -> None:
    """k-means as the zero-variance limit of a spherical Gaussian mixture."""


@main.command()
@click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0), help="Random seed.")
def demo(seed: int) -> None:
    """The main job on the embedded Old Faithful data (standardized, K = 2)."""
    X = load_faithful(standardized=True).data
    prior = sample_prior(X.shape[0], n_clusters=2, n_features=2, num_datasets=1, seed=seed)
    click.echo(f"Old Faithful: {X.shape[0]} eruptions, 2 standardized features")
    click.echo(
        f"one data set from the prior: sigma={prior.sigma[0]:.3f}, weights={prior.weights[0].tolist()}"
    )
    means = prior.means[0]
    for sigma in (1.0, 0.3, 0.0):
        draws = sample_from(means, X.shape[0], weights=prior.weights[0], sigma=sigma, seed=seed)
        inertia = kmeans_objective(draws.x, means, draws.z)
        click.echo(f"sigma={sigma:<4}  inertia of generated data around its centroids: {inertia:9.3f}")
