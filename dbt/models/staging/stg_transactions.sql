-- One row per processed transaction; explicit columns so the hive `date` folder column and any
-- future lake columns do not leak into the warehouse contract.
select
    transaction_id,
    event_time,
    event_date,
    customer_key,
    card_key,
    terminal_id,
    amount,
    currency,
    amount_eur,
    merchant_category,
    channel,
    country,
    hour,
    day_of_week,
    is_weekend,
    is_night,
    is_fraud,
    label_type,
    label_known_at,
    fraud_scenario,
    processed_at
from {{ source('lake', 'processed_transactions') }}
