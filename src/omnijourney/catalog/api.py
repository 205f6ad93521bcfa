"""HTTP routes of this domain (thin: parse, call the service, shape the answer)."""

from fastapi import APIRouter

router = APIRouter()
