"""Pruning (DESIGN.md, ``prune/``): MENAS lottery tickets (channel-pruning proposals, Eq. 1 truncation, BN
re-calibration, top-k) and individual weight sharing between parent and child networks."""
from .inherit import (
                      KINDS,
                      check_state_matches,
                      empty_network,
                      inherit_weights,
                      inheritance_summary,
)
from .lottery import (
                      CALIB_STEPS,
                      PROPOSAL_RATES,
                      PROPOSALS,
                      TICKETS,
                      LotteryResult,
                      Ticket,
                      explore_lottery_tickets,
                      pruning_proposals,
)

__all__ = ["inherit_weights", "inheritance_summary", "empty_network", "check_state_matches", "KINDS",
           "pruning_proposals", "explore_lottery_tickets", "LotteryResult", "Ticket", "PROPOSAL_RATES",
           "PROPOSALS", "TICKETS", "CALIB_STEPS"]
