-- Final (matured) labels and the time-split assignment from the sandbox zone.
select
    transaction_id,
    event_date,
    is_fraud,
    label_known_at,
    matured_at,
    split
from {{ source('lake', 'sandbox_transactions') }}
