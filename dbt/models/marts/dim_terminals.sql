-- One row per terminal; country and merchant category are the most frequent seen on it.
with transactions as (
    select * from {{ ref('fct_transactions') }}
),

terminal_country as (
    {{ most_frequent(ref('fct_transactions'), 'terminal_id', 'country') }}
),

terminal_category as (
    {{ most_frequent(ref('fct_transactions'), 'terminal_id', 'merchant_category') }}
)

select
    transactions.terminal_id,
    terminal_country.country,
    terminal_category.merchant_category,
    min(transactions.event_time) as first_seen_at,
    max(transactions.event_time) as last_seen_at,
    count(*) as transaction_count
from transactions
join terminal_country on terminal_country.terminal_id = transactions.terminal_id
join terminal_category on terminal_category.terminal_id = transactions.terminal_id
group by transactions.terminal_id, terminal_country.country, terminal_category.merchant_category
