-- One row per transaction with the best-known fraud outcome: the sandbox's final label once the
-- label window has matured, else the label already known in the processed zone, else 0 (no
-- chargeback yet). `label_status` says which of the three it is.
with transactions as (
    select * from {{ ref('stg_transactions') }}
),

matured as (
    select transaction_id, is_fraud as matured_is_fraud, matured_at, split
    from {{ ref('stg_sandbox_transactions') }}
)

select
    transactions.transaction_id,
    transactions.event_time,
    transactions.event_date,
    transactions.hour,
    transactions.day_of_week,
    transactions.is_weekend,
    transactions.is_night,
    transactions.customer_key,
    transactions.card_key,
    transactions.terminal_id,
    transactions.channel,
    transactions.country,
    transactions.merchant_category,
    transactions.currency,
    transactions.amount,
    transactions.amount_eur,
    cast(coalesce(matured.matured_is_fraud, transactions.is_fraud, 0) as integer) as is_fraud,
    case
        when matured.transaction_id is not null then 'matured'
        when transactions.is_fraud is not null then 'labelled'
        else 'unlabelled'
    end as label_status,
    transactions.label_type,
    transactions.label_known_at,
    transactions.fraud_scenario,
    matured.matured_at,
    matured.split
from transactions
left join matured on matured.transaction_id = transactions.transaction_id
