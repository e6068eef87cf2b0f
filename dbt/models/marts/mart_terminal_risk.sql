-- Terminal risk: lifetime and trailing-28-day fraud (relative to the newest day in the warehouse),
-- the signal of the compromised-terminal scenario.
with transactions as (
    select * from {{ ref('fct_transactions') }}
),

bounds as (
    select {{ dbt.dateadd('day', -(var('risk_window_days', 28) - 1), 'max(event_date)') }} as window_start
    from transactions
),

per_terminal as (
    select
        transactions.terminal_id,
        count(*) as transaction_count,
        {{ count_if("transactions.is_fraud = 1") }} as fraud_count,
        sum(transactions.amount_eur) as amount_eur,
        sum(case when transactions.is_fraud = 1 then transactions.amount_eur else 0 end) as fraud_amount_eur,
        {{ count_if("transactions.event_date >= bounds.window_start") }} as transaction_count_28d,
        {{ count_if("transactions.event_date >= bounds.window_start and transactions.is_fraud = 1") }} as fraud_count_28d,
        max(case when transactions.is_fraud = 1 then transactions.event_time end) as last_fraud_at
    from transactions
    cross join bounds
    group by transactions.terminal_id
)

select
    per_terminal.terminal_id,
    terminals.country,
    terminals.merchant_category,
    per_terminal.transaction_count,
    per_terminal.fraud_count,
    {{ safe_ratio('per_terminal.fraud_count', 'per_terminal.transaction_count') }} as fraud_rate,
    per_terminal.amount_eur,
    per_terminal.fraud_amount_eur,
    per_terminal.transaction_count_28d,
    per_terminal.fraud_count_28d,
    {{ safe_ratio('per_terminal.fraud_count_28d', 'per_terminal.transaction_count_28d') }} as fraud_rate_28d,
    per_terminal.last_fraud_at,
    {{ risk_tier('per_terminal.fraud_count_28d', 'per_terminal.transaction_count_28d') }} as risk_tier
from per_terminal
join {{ ref('dim_terminals') }} as terminals on terminals.terminal_id = per_terminal.terminal_id
