# The C implementation of alertbot.rules.core (alertbot/rules/_fastcore.c): the same API.
from alertbot.rules.core import BUSY as BUSY
from alertbot.rules.core import DUPLICATE as DUPLICATE
from alertbot.rules.core import QUIET as QUIET
from alertbot.rules.core import Core as Core
from alertbot.rules.core import conflate as conflate
