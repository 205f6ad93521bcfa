"""Customer 360 routes."""

from fastapi import APIRouter

router = APIRouter(prefix="/customers", tags=["customers"])
