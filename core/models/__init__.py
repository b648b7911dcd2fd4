"""All tables. Import models from here; ``Base.metadata`` is the whole schema."""

from core.models.alerts import Alert, AlertRule, AlertTransition, Notification
from core.models.base import Base
from core.models.billing import Dispute, Invoice, InvoiceLine, InvoicePaymentRef, Payment, PaymentMethod, Refund
from core.models.catalogue import Price, Tier
from core.models.changes import ChangeRequest
from core.models.config import FxRate, Setting
from core.models.members import Member, StaffNote
from core.models.rollups import DailyCash, DailyDeclines, DailyPayments, MrrPeriod, MrrSegment  # noqa: F401
from core.models.staff import AuditChainHead, AuditEntry, LoginAttempt, StaffAccount
from core.models.staff_sessions import StaffSession
from core.models.stripe_sync import RunLock, StripeEvent, SyncRun, SyncState
from core.models.subscriptions import MembershipChange, Subscription, SubscriptionItem

__all__ = [
    "Alert", "AlertRule", "AlertTransition", "AuditChainHead", "AuditEntry", "Base", "ChangeRequest", "Dispute",
    "FxRate", "Invoice", "InvoiceLine", "InvoicePaymentRef", "LoginAttempt", "MembershipChange", "Member",
    "Notification", "Payment", "PaymentMethod", "Price", "Refund", "RunLock", "Setting",
    "StaffAccount", "StaffNote", "StaffSession", "StripeEvent", "Subscription", "SubscriptionItem", "SyncRun",
    "SyncState", "Tier",
]
