"""Pruning (DESIGN.md, ``prune/``): MENAS lottery tickets (channel-pruning proposals, Eq. 1 truncation, BN
re-calibration, top-k), individual weight sharing between parent and child networks, and the LNAS lottery tickets
(iterative magnitude pruning with rewinding, path-level pruning of architecture parameters)."""
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
from .magnitude import (
                        alpha_prune_counts,
                        iterative_magnitude_pruning,
                        magnitude_prune,
                        prune_alphas,
                        rewind,
                        round_keep_fraction,
                        weight_masks,
)
from .ticket import export_ticket, train_ticket

__all__ = ["inherit_weights", "inheritance_summary", "empty_network", "check_state_matches", "KINDS",
           "pruning_proposals", "explore_lottery_tickets", "LotteryResult", "Ticket", "PROPOSAL_RATES",
           "PROPOSALS", "TICKETS", "CALIB_STEPS", "round_keep_fraction", "magnitude_prune", "rewind", "weight_masks",
           "iterative_magnitude_pruning", "alpha_prune_counts", "prune_alphas", "train_ticket", "export_ticket"]
