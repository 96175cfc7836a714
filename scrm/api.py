"""What the API answers when something goes wrong."""

from django.http import Http404
from rest_framework.exceptions import NotFound
from rest_framework.views import exception_handler as drf_exception_handler


def exception_handler(exc, context):
    """DRF's, but a record not found is said in the reader's language: Django's
    `get_object_or_404` names the model in English ("No Customer matches the given
    query."), which DRF passed on as it was."""
    if isinstance(exc, Http404):
        exc = NotFound()
    return drf_exception_handler(exc, context)
