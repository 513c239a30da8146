"""The field's multi-label metrics, NumPy only, below every stage that scores predictions: the
search's selection (`heads`), the final model's thresholds and its suggestions' quality
(`model`), and the report (`analysis`). Each is tested against scikit-learn or a plain loop.

    ranking       average_precision, mean_average_precision (the known-labels mask), roc_auc,
                  ranked_average_precision (one long ranking, lean in memory)
    thresholds    best_global_threshold, best_f1_thresholds (chosen on validation rows), top_k
    multilabel    threshold_metrics (CP / CR / CF1 / OP / OR / OF1), evaluate (every metric of a run)
"""
from .multilabel import evaluate, threshold_metrics
from .ranking import average_precision, mean_average_precision, ranked_average_precision, roc_auc
from .thresholds import best_f1_thresholds, best_global_threshold, top_k

__all__ = ["average_precision", "best_f1_thresholds", "best_global_threshold", "evaluate",
           "mean_average_precision", "ranked_average_precision",
           "roc_auc", "threshold_metrics", "top_k"]
