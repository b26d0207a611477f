"""The consent app's models: the core (purposes, notices, subjects, the ledger, decisions)
in consent.models.core, features in their own modules; all importable from here."""

from consent.models.banner import BannerShown as BannerShown
from consent.models.banner import BannerText as BannerText
from consent.models.banner import Property as Property
from consent.models.banner import SubjectLink as SubjectLink
from consent.models.core import AFFIRMATIVE_METHODS as AFFIRMATIVE_METHODS
from consent.models.core import EVENT_ACTIONS as EVENT_ACTIONS
from consent.models.core import RECTIFIED as RECTIFIED
from consent.models.core import Action as Action
from consent.models.core import ActorType as ActorType
from consent.models.core import ConsentContext as ConsentContext
from consent.models.core import ConsentEvent as ConsentEvent
from consent.models.core import ConsentState as ConsentState
from consent.models.core import DataUse as DataUse
from consent.models.core import Decision as Decision
from consent.models.core import DecisionLineage as DecisionLineage
from consent.models.core import GivenBy as GivenBy
from consent.models.core import IndicationMethod as IndicationMethod
from consent.models.core import LedgerPurgeGuard as LedgerPurgeGuard
from consent.models.core import LedgerVerification as LedgerVerification
from consent.models.core import LegalBasis as LegalBasis
from consent.models.core import NoticeText as NoticeText
from consent.models.core import NoticeVersion as NoticeVersion
from consent.models.core import Purpose as Purpose
from consent.models.core import Source as Source
from consent.models.core import Subject as Subject
from consent.models.core import SubjectKeyChange as SubjectKeyChange
from consent.models.core import SubjectTombstone as SubjectTombstone
from consent.models.imports import ConsentImport as ConsentImport
from consent.models.imports import ConsentImportBatch as ConsentImportBatch
from consent.models.imports import ImportedRecord as ImportedRecord
from consent.models.snapshots import Snapshot as Snapshot
from consent.models.snapshots import SnapshotChunk as SnapshotChunk
from consent.models.staff import Restriction as Restriction
from consent.models.staff import SubjectNote as SubjectNote
