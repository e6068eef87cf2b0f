-- Customer risk: spending profile plus lifetime and trailing-28-day fraud (relative to the newest
-- day in the warehouse), the signal of the compromised-card scenario.
with transactions as (
    select * from {{ ref('fct_transactions') }}
),

bounds as (
    select {{ dbt.dateadd('day', -(var('risk_window_days', 28) - 1), 'max(event_date)') }} as window_start
    from transactions
),

per_customer as (
    select
        transactions.customer_key,
        count(*) as transaction_count,
        count(distinct transactions.terminal_id) as terminal_count,
        count(distinct transactions.country) as country_count,
        sum(transactions.amount_eur) as amount_eur,
        avg(transactions.amount_eur) as avg_amount_eur,
        max(transactions.amount_eur) as max_amount_eur,
        {{ count_if("transactions.is_night") }} as night_transaction_count,
        {{ count_if("transactions.channel = 'ecommerce'") }} as ecommerce_transaction_count,
        {{ count_if("transactions.is_fraud = 1") }} as fraud_count,
        {{ count_if("transactions.event_date >= bounds.window_start") }} as transaction_count_28d,
        {{ count_if("transactions.event_date >= bounds.window_start and transactions.is_fraud = 1") }} as fraud_count_28d,
        max(case when transactions.is_fraud = 1 then transactions.event_time end) as last_fraud_at
    from transactions
    cross join bounds
    group by transactions.customer_key
)

select
    per_customer.customer_key,
    customers.home_country,
    customers.card_count,
    per_customer.transaction_count,
    per_customer.terminal_count,
    per_customer.country_count,
    per_customer.amount_eur,
    per_customer.avg_amount_eur,
    per_customer.max_amount_eur,
    {{ safe_ratio('per_customer.night_transaction_count', 'per_customer.transaction_count') }} as night_share,
    {{ safe_ratio('per_customer.ecommerce_transaction_count', 'per_customer.transaction_count') }} as ecommerce_share,
    per_customer.fraud_count,
    {{ safe_ratio('per_customer.fraud_count', 'per_customer.transaction_count') }} as fraud_rate,
    per_customer.transaction_count_28d,
    per_customer.fraud_count_28d,
    per_customer.last_fraud_at,
    {{ risk_tier('per_customer.fraud_count_28d', 'per_customer.transaction_count_28d') }} as risk_tier
from per_customer
join {{ ref('dim_customers') }} as customers on customers.customer_key = per_customer.customer_key
