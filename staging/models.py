"""Staging jobs and their attempts: one `Attempt` per paid Replicate prediction.

A job's status is never stored: it is derived from its latest attempt (`Attempt.job_status_of` for
one attempt, `StagingJob.objects.with_status()` for querysets, side by side below), so the two can
never disagree. Attempt states only move forward (see `Attempt.RANK`); every transition is a
compare-and-set UPDATE in `transitions` (docs/architecture.md, "Never pay twice").
"""

from __future__ import annotations

import secrets
import uuid

from django.conf import settings
from django.db import models
from django.db.models import Case, CharField, Exists, OuterRef, Q, Subquery, Value, When

from models_config.builders import DEFAULT_ROOM_TYPE, DEFAULT_STYLE


def new_token() -> str:
    """An attempt's unguessable webhook credential (docs/replicate.md#webhooks)."""
    return secrets.token_urlsafe(24)


def original_upload_to(job: StagingJob, filename: str) -> str:
    ext = filename.rsplit(".", 1)[-1].lower() if "." in filename else "img"
    return f"staging/originals/{job.uid}/original.{ext}"


def input_upload_to(job: StagingJob, filename: str) -> str:
    ext = filename.rsplit(".", 1)[-1].lower() if "." in filename else "img"
    return f"staging/originals/{job.uid}/input.{ext}"


def output_upload_to(image: StagedImage, filename: str) -> str:
    return f"staging/outputs/{image.attempt.job.uid}/a{image.attempt.number}/{filename}"


class JobStatus(models.TextChoices):
    QUEUED = "queued"  # waiting for a worker, or for a retry's backoff
    HELD = "held"  # waiting for spend budget (docs/architecture.md#spend-caps)
    RUNNING = "running"  # at Replicate, or outputs being copied
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"


class ConfigSource(models.TextChoices):
    """Where an attempt's config came from (recorded when it is submitted)."""

    STORED = "stored", "active stored version"
    DEFAULTS = "defaults", "code defaults"
    OVERRIDE = "override", "the job's override on top of the active version"


class StagingJobQuerySet(models.QuerySet):
    def with_status(self) -> StagingJobQuerySet:
        """Jobs annotated with `derived_status`: the SQL twin of `Attempt.job_status_of` (no query per row)."""
        latest_state = Subquery(Attempt.objects.filter(job=OuterRef("pk")).order_by("-number").values("state")[:1])
        return self.annotate(
            latest_state=latest_state,
            has_output=Exists(StagedImage.objects.filter(attempt__job=OuterRef("pk"))),
            derived_status=Case(
                When(latest_state__in=Attempt.UNDELIVERED, has_output=True, then=Value(JobStatus.SUCCEEDED)),
                When(latest_state__in=Attempt.TERMINAL, then="latest_state"),
                When(latest_state__in=Attempt.RUNNING, then=Value(JobStatus.RUNNING)),
                When(latest_state=Attempt.State.HELD, then=Value(JobStatus.HELD)),
                default=Value(JobStatus.QUEUED),
                output_field=CharField(),
            ),
        )


class Listing(models.Model):
    """The photos of one property, staged alike: one style, model and seed (docs/architecture.md#listings).

    The jobs hold what each photo was staged with; a listing's fields say what its next "stage all" or
    "reprocess all" uses, and change only through `staging.listings`.
    """

    name = models.CharField(max_length=200)
    style = models.CharField(max_length=100, default=DEFAULT_STYLE)
    model_slug = models.SlugField(max_length=100)
    seed = models.BigIntegerField(null=True, blank=True, help_text="Shared by every photo, where the model has one.")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.name


class StagingJob(models.Model):
    uid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    photo = models.FileField(upload_to=original_upload_to, max_length=300, help_text="The original upload, untouched.")
    input_photo = models.FileField(
        upload_to=input_upload_to,
        max_length=300,
        blank=True,
        help_text="The upright copy sent to the model, stored only when the photo's EXIF orientation rotates it.",
    )
    photo_width = models.PositiveIntegerField(default=0)
    photo_height = models.PositiveIntegerField(default=0)
    model_slug = models.SlugField(max_length=100, db_index=True)
    room_type = models.CharField(max_length=100, default=DEFAULT_ROOM_TYPE)
    style = models.CharField(max_length=100, default=DEFAULT_STYLE)
    instructions = models.TextField(blank=True, default="")
    seed = models.BigIntegerField(null=True, blank=True)
    config_override = models.JSONField(null=True, blank=True)
    listing = models.ForeignKey(Listing, null=True, blank=True, on_delete=models.PROTECT, related_name="jobs")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="Who asked for it (empty: a command or the system); decides who may see it.",
    )
    reprocessed_from = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="copies",
        help_text="The job whose photo this one reprocesses on another model (reprocess --to-model).",
    )
    chosen_output = models.ForeignKey(
        "StagedImage",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The output staff chose to deliver; empty: the latest succeeded attempt's first output.",
    )
    chosen_at = models.DateTimeField(null=True, blank=True)
    chosen_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    is_try = models.BooleanField(
        default=False,
        db_index=True,
        help_text="A playground run of an unsaved draft config (docs/architecture.md#the-playground): "
        "paid, but never a delivered result, and left out of listings and metrics by default.",
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = StagingJobQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"Job {self.pk} ({self.model_slug})"

    @property
    def latest_attempt(self) -> Attempt | None:
        return self.attempts.order_by("-number").first()

    @property
    def status(self) -> str:
        """Derived from the latest attempt (a job without attempts is queued); always fresh.

        One query per call: for lists use `StagingJob.objects.with_status()` and its `derived_status`.
        """
        attempt = self.latest_attempt
        if attempt is None:
            return JobStatus.QUEUED
        has_output = attempt.state in Attempt.UNDELIVERED and StagedImage.objects.filter(attempt__job=self).exists()
        return Attempt.job_status_of(attempt.state, has_output=has_output)

    @property
    def sent_photo(self):
        """The file whose URL (or upload) goes to Replicate."""
        return self.input_photo if self.input_photo else self.photo


class Arm(models.TextChoices):
    """Which config pointer an attempt followed (docs/architecture.md#canary)."""

    ACTIVE = "active"
    CANDIDATE = "candidate"


class ErrorClass(models.TextChoices):
    TRANSIENT = "transient"
    PERMANENT = "permanent"


class Attempt(models.Model):
    class State(models.TextChoices):
        QUEUED = "queued"
        HELD = "held"  # a spend cap was reached at the claim: waits, unsent (docs/architecture.md#spend-caps)
        SUBMITTING = "submitting"  # claimed by one worker; the create may be in flight
        SUBMITTED = "submitted"  # prediction id saved (Replicate: starting)
        PROCESSING = "processing"
        COLLECTING = "collecting"  # Replicate succeeded; outputs being copied to our storage
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        CANCELED = "canceled"

    # Forward order: a transition may only move an attempt to a state of higher rank.
    RANK = {
        State.QUEUED: 0,
        State.HELD: 0,  # a waiting state like queued: resuming moves it back to queued
        State.SUBMITTING: 1,
        State.SUBMITTED: 2,
        State.PROCESSING: 3,
        State.COLLECTING: 4,
        State.SUCCEEDED: 9,
        State.FAILED: 9,
        State.CANCELED: 9,
    }
    TERMINAL = (State.SUCCEEDED, State.FAILED, State.CANCELED)
    IN_FLIGHT = (State.SUBMITTED, State.PROCESSING)  # a prediction runs at Replicate
    RUNNING = (State.SUBMITTING, *IN_FLIGHT, State.COLLECTING)  # the job shows as running
    UNDELIVERED = (State.FAILED, State.CANCELED)  # ended without outputs of its own

    job = models.ForeignKey(StagingJob, on_delete=models.CASCADE, related_name="attempts")
    number = models.PositiveIntegerField()
    token = models.CharField(max_length=64, unique=True, default=new_token, editable=False)
    state = models.CharField(max_length=20, choices=State.choices, default=State.QUEUED)
    config_version = models.ForeignKey(
        "models_config.ModelConfigVersion", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    pinned_version = models.ForeignKey(
        "models_config.ModelConfigVersion",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="The stored version asked for instead of the active one (reprocess --config-version).",
    )
    config = models.JSONField(null=True, blank=True, help_text="The validated config actually used.")
    config_source = models.CharField(max_length=20, choices=ConfigSource.choices, blank=True, default="")
    arm = models.CharField(max_length=10, choices=Arm.choices, default=Arm.ACTIVE)
    input = models.JSONField(null=True, blank=True, help_text="The exact input sent to Replicate.")
    prediction_id = models.CharField(max_length=64, null=True, blank=True, unique=True)
    replicate_status = models.CharField(max_length=20, blank=True, default="")
    output = models.JSONField(null=True, blank=True, help_text="Output URLs as Replicate returned them.")
    error = models.TextField(blank=True, default="")
    error_class = models.CharField(max_length=10, choices=ErrorClass.choices, blank=True, default="")
    predict_time = models.FloatField(null=True, blank=True)
    cost = models.DecimalField(max_digits=10, decimal_places=4, null=True, blank=True)
    estimated_cost = models.DecimalField(
        max_digits=10, decimal_places=4, null=True, blank=True, help_text="USD reserved at the claim (at most)."
    )
    reserved_on = models.DateField(
        null=True, blank=True, help_text="UTC day whose spend counters hold this attempt's reservation, until it ends."
    )
    held_reason = models.CharField(max_length=300, blank=True, default="")
    held_at = models.DateTimeField(null=True, blank=True)
    next_retry_at = models.DateTimeField(null=True, blank=True)
    deadline = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    submitting_at = models.DateTimeField(null=True, blank=True)
    submitted_at = models.DateTimeField(null=True, blank=True)
    checked_at = models.DateTimeField(null=True, blank=True, help_text="Last news about the prediction.")
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["job", "number"]
        constraints = [models.UniqueConstraint(fields=["job", "number"], name="unique_attempt_number_per_job")]
        indexes = [
            # The scheduled ticks: in-flight by last news, stuck submits, due retries, deadlines.
            models.Index(fields=["state", "checked_at"], name="attempt_state_checked"),
            models.Index(fields=["state", "next_retry_at"], name="attempt_state_retry"),
            models.Index(fields=["state", "held_at"], name="attempt_state_held"),
            models.Index(
                fields=["deadline"],
                name="attempt_open_deadline",
                condition=~Q(state__in=["succeeded", "failed", "canceled"]),  # Attempt.TERMINAL
            ),
        ]

    def __str__(self) -> str:
        return f"Attempt {self.number} of job {self.job_id} ({self.state})"

    @property
    def is_terminal(self) -> bool:
        return self.state in self.TERMINAL

    @staticmethod
    def job_status_of(state: str, *, has_output: bool = False) -> str:
        """A job's status from its latest attempt's state (SQL twin: `StagingJobQuerySet.with_status`).

        A job with a stored output stays succeeded when a later reprocess fails or is canceled: what was
        delivered still stands, and that attempt's failure is shown beside it, not instead of it.
        """
        if state in Attempt.UNDELIVERED and has_output:
            return JobStatus.SUCCEEDED
        if state in Attempt.TERMINAL:
            return JobStatus(state)
        if state in Attempt.RUNNING:
            return JobStatus.RUNNING
        if state == Attempt.State.HELD:
            return JobStatus.HELD
        return JobStatus.QUEUED


class StagedImage(models.Model):
    attempt = models.ForeignKey(Attempt, on_delete=models.CASCADE, related_name="images")
    index = models.PositiveIntegerField(help_text="Position in the prediction's output.")
    source_url = models.URLField(max_length=1000)
    file = models.FileField(upload_to=output_upload_to, max_length=300)
    content_type = models.CharField(max_length=50)
    size = models.PositiveBigIntegerField()
    checksum = models.CharField(max_length=64, help_text="SHA-256 of the stored bytes.")
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["attempt", "index"]
        constraints = [models.UniqueConstraint(fields=["attempt", "index"], name="unique_output_index")]

    def __str__(self) -> str:
        return self.file.name


def derivative_upload_to(derivative: Derivative, filename: str) -> str:
    return output_upload_to(derivative.image, filename)


class DerivativeKind(models.TextChoices):
    """The files made from a stored output (`staging.derivatives` holds one maker per kind)."""

    THUMBNAIL = "thumbnail"
    LABELLED = "labelled"  # the "Virtually Staged" disclosure (docs/architecture.md#disclosure-labels)


class Derivative(models.Model):
    """A file made from a `StagedImage`'s clean file (docs/architecture.md, data model); one per kind."""

    image = models.ForeignKey(StagedImage, on_delete=models.CASCADE, related_name="derivatives")
    kind = models.CharField(max_length=20, choices=DerivativeKind.choices)
    file = models.FileField(upload_to=derivative_upload_to, max_length=300)
    content_type = models.CharField(max_length=50)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    size = models.PositiveBigIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["image", "kind"]
        constraints = [models.UniqueConstraint(fields=["image", "kind"], name="unique_derivative_kind")]

    def __str__(self) -> str:
        return self.file.name


class WebhookDelivery(models.Model):
    """One row per accepted webhook message: the unique `webhook_id` makes redeliveries no-ops."""

    webhook_id = models.CharField(max_length=100, unique=True)
    attempt = models.ForeignKey(Attempt, null=True, on_delete=models.SET_NULL, related_name="+")
    prediction_id = models.CharField(max_length=64, blank=True, default="")
    status = models.CharField(max_length=20, blank=True, default="")
    received_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        verbose_name_plural = "webhook deliveries"

    def __str__(self) -> str:
        return self.webhook_id


class CreatePacer(models.Model):
    """The pace of creates shared by every worker on every host (`staging/pacer.py`): one row per name.

    `next_slot_at` is when the next create may be sent; `line_ends_at` is when the last attempt put off
    for a slot comes back; `recent` counts the creates of the last minute per second (`[epoch second,
    creates]`), so that a burst never lets a minute pass the rate. All move by compare-and-set on
    `version`, never under a lock.
    """

    name = models.CharField(max_length=50, unique=True)
    next_slot_at = models.DateTimeField()
    line_ends_at = models.DateTimeField()
    recent = models.JSONField(default=list, blank=True)
    version = models.PositiveBigIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.name}: next slot {self.next_slot_at:%H:%M:%S.%f}"


class SpendDay(models.Model):
    """Spend counters of one UTC day for one model (`model_slug`) or for all (`model_slug` = "").

    `reserved` is the estimated cost of attempts claimed and not yet ended, `spent` the actual cost of
    those that ended. A claim adds its estimate with one conditional UPDATE, so two workers can never
    both pass a cap with one slot left (docs/architecture.md#spend-caps).
    """

    OVERALL = ""

    day = models.DateField()
    model_slug = models.CharField(max_length=100, blank=True)
    reserved = models.DecimalField(max_digits=12, decimal_places=4, default=0)
    spent = models.DecimalField(max_digits=12, decimal_places=4, default=0)

    class Meta:
        ordering = ["-day", "model_slug"]
        constraints = [models.UniqueConstraint(fields=["day", "model_slug"], name="unique_spend_day_model")]
        verbose_name = "daily spend"
        verbose_name_plural = "daily spend"

    def __str__(self) -> str:
        return f"{self.day} {self.model_slug or 'all models'}: {self.spent} spent, {self.reserved} reserved"


class RefusedCreates(models.Model):
    """How many creates Replicate turned away, per model and HTTP status (0: never connected), for `/metrics`.

    Counted in the database, like every other figure of `/metrics`, so refusals in every queue process on
    every host add up and survive restarts; one row per (model, status) moved by an UPDATE ... + 1. A
    refused create costs nothing and is sent again (docs/architecture.md#refused-creates).
    """

    model_slug = models.CharField(max_length=100)
    status = models.PositiveSmallIntegerField(help_text="Replicate's HTTP status; 0 when no answer came.")
    count = models.PositiveBigIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["model_slug", "status"], name="unique_refusals_model_status")]
        verbose_name_plural = "refused creates"

    def __str__(self) -> str:
        return f"{self.model_slug} {self.status or 'no answer'}: {self.count} refused"
